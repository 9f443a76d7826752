"""backup_schedule: systemd timers and services (valid units, next elapse) and cron entries."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import BIN_DIR, CRON_DIR, UNIT_DIR, all_hosts, host_job_pairs, jobs_of, scheduler_of

testinfra_hosts = all_hosts()


def _jobs(host, scheduler):
    name = host.backend.host
    return [job for job in jobs_of(name) if scheduler_of(name, job) == scheduler]


def _unit(job) -> str:
    return f"{UNIT_DIR}/songmetrix-backup-{job['name']}"


def test_inventory_covers_both_schedulers():
    assert host_job_pairs("systemd") and host_job_pairs("cron")


def test_timer_and_service_units(host):
    jobs = _jobs(host, "systemd")
    if not jobs:
        pytest.skip("no systemd jobs on this host")
    for job in jobs:
        timer = host.file(f"{_unit(job)}.timer").content_string
        service = host.file(f"{_unit(job)}.service").content_string
        assert "Persistent=true" in timer
        assert re.search(r"^RandomizedDelaySec=\S+", timer, re.M)
        assert f"Unit=songmetrix-backup-{job['name']}.service" in timer
        assert f"ExecStart={BIN_DIR}/songmetrix-backup-{job['name']}" in service
        for setting in ("OnFailure=", "ProtectSystem=strict", "ReadWritePaths=", "IOSchedulingClass=idle", "Nice="):
            assert setting in service, setting


def test_units_pass_systemd_analyze_verify(host):
    """systemd-analyze verify inside the host: syntax, ExecStart executables, OnFailure/Unit references."""
    jobs = _jobs(host, "systemd")
    if not jobs:
        pytest.skip("no systemd jobs on this host")
    units = [f"{_unit(job)}.{kind}" for job in jobs for kind in ("timer", "service")]
    result = host.run("systemd-analyze verify " + " ".join(map(shlex.quote, units)))
    assert result.rc == 0, result.stderr
    # verify reports problems on stderr even when it exits 0 for some of them
    assert "songmetrix" not in result.stderr, result.stderr


def test_on_calendar_has_next_elapse(host):
    jobs = _jobs(host, "systemd")
    if not jobs:
        pytest.skip("no systemd jobs on this host")
    for job in jobs:
        timer = host.file(f"{_unit(job)}.timer").content_string
        on_calendar = re.search(r"^OnCalendar=(.+)$", timer, re.M).group(1).strip()
        if job.get("timezone"):
            assert on_calendar.endswith(job["timezone"]), on_calendar
        out = host.check_output(f"systemd-analyze calendar {shlex.quote(on_calendar)}")
        assert re.search(r"Next elapse: \w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", out), out


def test_no_cron_entries_for_systemd_jobs(host):
    for job in _jobs(host, "systemd"):
        assert not host.file(f"{CRON_DIR}/songmetrix-backup-{job['name']}").exists


def test_cron_entries(host):
    jobs = _jobs(host, "cron")
    if not jobs:
        pytest.skip("no cron jobs on this host")
    for job in jobs:
        cron = host.file(f"{CRON_DIR}/songmetrix-backup-{job['name']}")
        assert cron.mode == 0o644 and cron.user == "root"
        entries = [line for line in cron.content_string.splitlines() if line and not line.startswith("#")
                   and "=" not in line.split()[0]]
        assert len(entries) == 1, cron.content_string
        fields = entries[0].split()
        assert " ".join(fields[:5]) == job["schedule"]
        assert fields[5] == "root"
        wrapper = fields[6]
        assert wrapper == f"{BIN_DIR}/songmetrix-backup-{job['name']}"
        # one run of a job at a time: the wrapper takes the job's lock without waiting
        assert re.search(r"^flock -n -E 75 9 ", host.file(wrapper).content_string, re.M)
        assert not host.file(f"{_unit(job)}.timer").exists


def test_wrapper_refuses_overlapping_runs(host):
    """While a run of the job holds its lock, a second start exits 75 at once and runs nothing."""
    jobs = _jobs(host, "cron") or _jobs(host, "systemd")
    job = jobs[0]["name"]
    lock = f"/run/songmetrix-backup/{job}.wrapper.lock"  # root's 0700 folder (RuntimeDirectory= under systemd)
    result = host.run(f"mkdir -p -m 0700 /run/songmetrix-backup && flock -o {lock} {BIN_DIR}/songmetrix-backup-{job}")
    assert result.rc == 75, result.stdout + result.stderr
    # a cron job's wrapper writes to the job's log when its output is not a terminal
    log = host.file(f"/var/log/songmetrix-backup/{job}.log")
    said = result.stderr + (log.content_string if log.exists else "")
    assert "holds" in said and "this run is skipped (" in said
