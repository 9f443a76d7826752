"""The real cron daemon on a test host runs a one-minute job: the scheduled run stores a backup.

The host's root is a chroot in its own PID namespace without init; cron is started over SSH (it
forks into the background inside the namespace), and stopped at the end by its pid file.
"""

from __future__ import annotations

import time

from conftest import LOCAL_STORAGE, jobs_of, manifests, read_json, scheduler_of

CRON_HOST = "backup-files"
testinfra_hosts = [CRON_HOST]
WAIT_SECONDS = 150


def _every_minute_job() -> dict:
    for job in jobs_of(CRON_HOST):
        if scheduler_of(CRON_HOST, job) == "cron" and job["schedule"] == "* * * * *":
            return job
    raise AssertionError(f"{CRON_HOST} has no cron job scheduled every minute")


def test_cron_daemon_runs_the_scheduled_backup(host):
    job = _every_minute_job()
    job_dir = f"{LOCAL_STORAGE}/{job['name']}"
    before = set(manifests(host, job_dir))
    assert not host.run("test -s /run/crond.pid && kill -0 $(cat /run/crond.pid)").succeeded, "cron already runs"
    cron_started = host.check_output("date -u +%Y-%m-%dT%H:%M:%SZ")
    host.run_test("/usr/sbin/cron")
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        new = []
        while time.monotonic() < deadline:
            new = sorted(set(manifests(host, job_dir)) - before)
            if new:
                break
            time.sleep(5)
        log = host.run(f"tail -n 30 /var/log/songmetrix-backup/{job['name']}.log").stdout
        assert new, f"no scheduled backup of {job['name']} within {WAIT_SECONDS}s; job log:\n{log}"
        manifest = read_json(host, new[-1])
        assert manifest["job"] == job["name"]
        assert manifest["kind"] == "scheduled"
        assert manifest["started"] >= cron_started, (manifest["started"], cron_started)
        assert manifest["host"] == CRON_HOST
        # the run went through the wrapper (its log) and ansible-playbook -c local
        assert f"songmetrix-backup: job {job['name']} starts" in host.file(
            f"/var/log/songmetrix-backup/{job['name']}.log").content_string
    finally:
        host.run("kill $(cat /run/crond.pid)")
