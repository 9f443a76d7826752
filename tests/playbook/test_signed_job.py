"""backup_run passes the signing key (songmetrix_backup_signing) to every module: backup.yml signs the
manifests, lock and attempt record, verifies and prunes with the key, and the restore test of verify.yml
passes over a backup planted in the storage."""

import json

import pytest

from test_demo import manifests, run_playbook
from tests.security.planting import plant_backup

pytestmark = pytest.mark.slow

KEY = "playbook-signing-key-" + "s" * 24


def test_signed_job_backs_up_verifies_prunes_and_restore_tests_only_what_it_signed(tmp_path):
    var_dir = tmp_path / "var"
    settings = {
        "songmetrix_backup_signing": {"key": KEY},
        "songmetrix_backup_jobs": [{
            "name": "demo-sqlite",
            "source": {"engine": "sqlite", "path": "{{ songmetrix_demo_sqlite_path }}"},
            "storage": "{{ songmetrix_backup_demo_storage }}",
            "verify": True,
            "retention": {"keep_last": 1},
            "prune": {"max_delete_fraction": 1.0},
            "restore_test": {},
        }],
    }
    extra = tmp_path / "jobs.json"
    extra.write_text(json.dumps(settings))
    extra.chmod(0o600)

    proc = run_playbook(var_dir, "-e", f"@{extra}", check=0)
    (manifest_path,) = manifests(var_dir, "demo-sqlite")
    record = json.loads(manifest_path.read_text())
    assert record["signature"]["algorithm"] == "hmac-sha256"
    attempt = json.loads((var_dir / "backups" / "demo-sqlite" / "last-attempt.json").read_text())
    assert attempt["status"] == "ok" and attempt["signature"]["key_id"] == record["signature"]["key_id"]
    assert KEY not in proc.stdout + proc.stderr

    planted = plant_backup(var_dir / "backups", "demo-sqlite", b"not a database", engine="sqlite", fmt="sqlite3")
    proc = run_playbook(var_dir, "-e", f"@{extra}", playbook="playbooks/verify.yml", check=0)
    assert "demo-sqlite: restore test ok" in proc.stdout, proc.stdout
    assert planted.manifest_key in proc.stdout + proc.stderr  # named in the warning of the module

    # The next backup prunes by keep_last 1 over what the key signed: the newest signed one stays, the first
    # goes, and so does the planted one, which the rule does not count and the policy over all would not keep.
    proc = run_playbook(var_dir, "-e", f"@{extra}", check=0)
    kept = [json.loads(path.read_text()) for path in manifests(var_dir, "demo-sqlite")]
    signed = [m for m in kept if "signature" in m]
    assert len(kept) == len(signed) == 1 and signed[0]["started"] > record["started"]
    assert KEY not in proc.stdout + proc.stderr
