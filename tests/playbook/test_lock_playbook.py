"""Job locks through the role: backup.yml on a job that another host is backing up fails that job,
naming the holder, and keeps going; a job's ``lock`` settings reach the dump module."""

import datetime
import json

import pytest

from test_demo import manifests, run_playbook

pytestmark = pytest.mark.slow
JOB = "demo-sqlite"


def stamp(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_job_locked_by_another_host_fails_naming_it_and_the_others_run(tmp_path):
    var_dir = tmp_path / "var"
    now = datetime.datetime.now(datetime.timezone.utc)
    lock = var_dir / "backups" / JOB / "lock.json"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"job": JOB, "operation": "backup", "host": "db-other", "pid": 31337, "owner": "backup",
                                "acquired": stamp(now), "expires": stamp(now + datetime.timedelta(hours=1))}))
    proc = run_playbook(var_dir)
    assert proc.returncode != 0, proc.stdout
    assert f"{JOB}: FAILED" in proc.stdout and "db-other (pid 31337" in proc.stdout, proc.stdout
    assert manifests(var_dir, JOB) == [] and len(manifests(var_dir, "demo-files")) == 1
    assert json.loads(lock.read_text())["host"] == "db-other"


def test_a_jobs_lock_settings_reach_the_module(tmp_path):
    var_dir = tmp_path / "var"
    locks = tmp_path / "locks"
    jobs = [{"name": JOB, "source": {"engine": "sqlite", "path": "{{ songmetrix_demo_sqlite_path }}"},
             "storage": "{{ songmetrix_backup_demo_storage }}", "lock": {"dir": str(locks), "stale_after": "2h"}}]
    extra = tmp_path / "jobs.json"
    extra.write_text(json.dumps({"songmetrix_backup_jobs": jobs}))
    run_playbook(var_dir, "-e", f"@{extra}", check=0)
    assert [p.name.startswith(JOB + "-") and p.suffix == ".lock" for p in locks.iterdir()] == [True]
    assert len(manifests(var_dir, JOB)) == 1
