"""playbooks/backup.yml with the demo jobs stored in S3: stored, verified, and no secret in the output at -vvv."""

import json

import pytest

from test_demo import run_playbook

pytestmark = pytest.mark.slow


def s3_vars(tmp_path, storage):
    path = tmp_path / "s3-vars.json"
    path.write_text(json.dumps({"songmetrix_backup_demo_storage": storage}))
    path.chmod(0o600)
    return "@%s" % path


def test_demo_jobs_to_s3_verified_without_secrets_in_output(tmp_path, s3_server, s3_bucket, s3_storage_params):
    storage = s3_storage_params(s3_bucket, prefix="fleet")
    proc = run_playbook(tmp_path / "var", "-e", s3_vars(tmp_path, storage), "-vvv", check=0)
    output = proc.stdout + proc.stderr
    assert s3_server.secret_key not in output
    assert "Verify the stored backup of demo-files" in output
    keys = s3_server.keys(s3_bucket, "fleet/")
    assert len([k for k in keys if k.endswith(".manifest.json")]) == 2, keys
    attempts = sorted(k for k in keys if k.endswith("/last-attempt.json"))
    assert attempts == ["fleet/demo-files/last-attempt.json", "fleet/demo-sqlite/last-attempt.json"], keys
    assert len(keys) == 6  # two artifacts, their manifests, and each job's last-attempt record
    assert "Prune old backups of demo-files" in output  # the demo jobs have a retention


def test_wrong_secret_key_fails_the_job_clearly_without_leaking_it(tmp_path, s3_bucket, s3_storage_params):
    wrong = "Wr0ngSecretKeyThatMustNotLeak/abcdefghijklmnop"
    storage = s3_storage_params(s3_bucket, secret_key=wrong)
    proc = run_playbook(tmp_path / "var", "-e", s3_vars(tmp_path, storage), "-vvv")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert wrong not in output
    assert "demo-sqlite: FAILED" in output and "secret key" in output.lower(), output[-3000:]
