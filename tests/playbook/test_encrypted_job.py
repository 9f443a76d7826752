"""backup_run passes a job's encryption, max_chunk_size and decryption to the modules: backup.yml
stores an age-encrypted, chunked backup, and verify.yml restores it with the job's key."""

import json
import subprocess

import pytest

from test_demo import manifests, run_playbook

pytestmark = pytest.mark.slow


def test_encrypted_chunked_job_backs_up_and_passes_its_restore_test(tmp_path):
    var_dir = tmp_path / "var"
    key = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    identity = key.read_text()
    public = next(line.split(": ")[1] for line in identity.splitlines() if line.startswith("# public key: "))
    jobs = {"songmetrix_backup_jobs": [{
        "name": "demo-sqlite",
        "source": {"engine": "sqlite", "path": "{{ songmetrix_demo_sqlite_path }}"},
        "storage": "{{ songmetrix_backup_demo_storage }}",
        "encryption": {"method": "age", "recipients": [public]},
        "max_chunk_size": "1M",
        "decryption": {"identity": identity},
        "restore_test": {},
    }]}
    extra = tmp_path / "jobs.json"
    extra.write_text(json.dumps(jobs))
    extra.chmod(0o600)

    proc = run_playbook(var_dir, "-e", f"@{extra}", check=0)
    (manifest_path,) = manifests(var_dir, "demo-sqlite")
    record = json.loads(manifest_path.read_text())
    assert {k: v for k, v in record["encryption"].items() if not k.startswith("plaintext_")} == {
        "method": "age", "recipients": [public]}
    assert len(record["encryption"]["plaintext_sha256"]) == 64
    assert record["artifact"].endswith(".sqlite3.zst.age") and len(record["chunks"]) == 1
    assert identity.splitlines()[-1] not in proc.stdout

    proc = run_playbook(var_dir, "-e", f"@{extra}", playbook="playbooks/verify.yml", check=0)
    assert "demo-sqlite: restore test ok" in proc.stdout, proc.stdout
    assert identity.splitlines()[-1] not in proc.stdout
