"""The demo run end to end: `ansible-playbook playbooks/backup.yml` on inventories/demo.

Runs the real playbook, role and dump module from the checkout with the ansible-playbook of the
Python running pytest (the project's venv), but writes everything under a temporary directory
(`-e songmetrix_demo_var_dir=...`), never into the checkout's var/.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.modrun import ansible_playbook

REPO = Path(__file__).resolve().parents[2]
JOBS = ("demo-sqlite", "demo-files")

pytestmark = pytest.mark.slow


def run_playbook(var_dir, *extra, check=None, playbook="playbooks/backup.yml"):
    """Run a playbook (backup.yml) from the repository root; return the CompletedProcess."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOME=str(Path(var_dir).parent / "ansible-home"),
        PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
    )
    env.pop("ANSIBLE_FORCE_COLOR", None)
    argv = [ansible_playbook(), playbook, "-e", f"songmetrix_demo_var_dir={var_dir}", *extra]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if check is not None:
        assert proc.returncode == check, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def manifests(var_dir, job):
    root = Path(var_dir) / "backups" / job
    return sorted(root.rglob("*.manifest.json")) if root.exists() else []


@pytest.fixture
def var_dir(tmp_path):
    return tmp_path / "var"


def test_demo_backup_twice(var_dir):
    first = run_playbook(var_dir, check=0)
    for job in JOBS:
        (manifest_path,) = manifests(var_dir, job)
        manifest = json.loads(manifest_path.read_text())
        assert manifest["job"] == job
        # The summary names the job and shows the first 16 hex digits of the artifact's sha256.
        assert f"{job}: ok" in first.stdout
        assert manifest["sha256"][:16] in first.stdout
        artifact = Path(var_dir) / "backups" / manifest["artifact"]
        assert artifact.is_file() and artifact.stat().st_size == manifest["stored_size"]
        assert str(artifact) in first.stdout
    assert "2 ok, 0 failed" in first.stdout
    # The demo data was created under the temporary var dir, not in the checkout.
    assert (Path(var_dir) / "demo" / "demo.sqlite3").is_file()
    assert (Path(var_dir) / "demo" / "files" / "config" / "app.ini").is_file()

    run_playbook(var_dir, check=0)
    for job in JOBS:
        found = manifests(var_dir, job)
        assert len(found) == 2, found
        assert found[0].name != found[1].name


def test_broken_source_fails_play_but_other_job_runs(var_dir):
    missing = Path(var_dir) / "nowhere" / "missing.sqlite3"
    proc = run_playbook(var_dir, "-e", f"songmetrix_demo_sqlite_path={missing}")
    assert proc.returncode != 0, proc.stdout
    assert manifests(var_dir, "demo-sqlite") == []
    assert not (Path(var_dir) / "backups" / "demo-sqlite").exists()
    assert len(manifests(var_dir, "demo-files")) == 1
    assert "demo-sqlite: FAILED" in proc.stdout
    assert str(missing) in proc.stdout  # the module's message names the missing file
    assert "demo-files: ok" in proc.stdout
    assert "1 of 2 backup job(s) failed on localhost: demo-sqlite" in proc.stdout


def test_single_job_and_unknown_job(var_dir):
    run_playbook(var_dir, "-e", "job=demo-files", check=0)
    assert len(manifests(var_dir, "demo-files")) == 1
    assert manifests(var_dir, "demo-sqlite") == []

    proc = run_playbook(var_dir, "-e", "job=no-such-job")
    assert proc.returncode != 0
    assert "No job named 'no-such-job'" in proc.stdout


def test_password_never_printed(var_dir, tmp_path):
    """A failing job with a password: not in the output, even with -vvv and no_log off."""
    secret = "Pw-7f3c9e1a-never-print-me"
    jobs = {
        "backup_run_no_log": False,
        "songmetrix_backup_jobs": [
            {
                "name": "pg-unreachable",
                "source": {
                    "engine": "postgresql",
                    "host": "127.0.0.1",
                    "port": 9,  # discard port: nothing listens
                    "user": "backup",
                    "password": secret,
                    "database": "orders",
                    "connect_timeout": 2,
                },
                "storage": {"type": "local", "path": str(Path(var_dir) / "backups")},
            }
        ],
    }
    extra = tmp_path / "jobs.json"
    extra.write_text(json.dumps(jobs))
    proc = run_playbook(var_dir, "-vvv", "-e", f"@{extra}")
    assert proc.returncode != 0
    assert "pg-unreachable: FAILED" in proc.stdout
    assert secret not in proc.stdout
    assert secret not in proc.stderr
    assert manifests(var_dir, "pg-unreachable") == []
