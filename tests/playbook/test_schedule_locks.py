"""The scheduled runs' lock (role backup_schedule, templates/wrapper.sh.j2), run for real: the role
renders the wrappers and units on localhost (a temporary root as in test_fleet_roles.py, but the
role's default lock folder, /run/songmetrix-backup), then the wrappers run with the lock held.

- A run that finds the lock held is skipped: counted in <lock dir>/<job>.skips, notified as
  `skipped` (event log), exit 75; the backup_schedule_skip_alert_after-th skip in a row fails
  (exit 1, notified as `failure`); the next run that gets the lock backs up and ends the count.
- cron: the run's output goes to the job's log; only a failure notice is printed (what cron mails).
- No other user can create or hold the lock (the old wrapper's lock in /run/lock: `nobody` held it
  and every run exited 75, counted as a success).
- The wrapper refuses a lock folder others may write, of another user, or a symlink, and a
  symlinked lock file.
- The services get the folder as RuntimeDirectory= (0700) and pass `systemd-analyze verify`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from test_fleet_roles import SYSTEMD_ANALYZE, Fleet

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the wrappers run as root, as under systemd or cron")]
NOBODY = pwd.getpwnam("nobody")
OTHER_PYTHON = shutil.which("python3", path="/usr/bin:/bin")
ENV = {"PATH": os.environ["PATH"]}


class LockFleet(Fleet):
    """Two jobs with unique names (the lock folder is the real /run/songmetrix-backup), a skipped run
    failing from the second in a row."""

    def __init__(self, tmp):
        super().__init__(tmp)
        tag = secrets.token_hex(3)
        self.timer_job, self.cron_job = "locks-%s" % tag, "locks-cron-%s" % tag

    def dirs(self):
        settings = super().dirs()
        del settings["backup_schedule_lock_dir"]  # the role's default
        settings["backup_schedule_skip_alert_after"] = 2
        return settings

    def lock_jobs(self):
        storage = {"type": "local", "path": str(self.root / "backups")}
        return [
            {"name": self.timer_job, "source": {"engine": "sqlite", "path": str(self.root / "data/demo.sqlite3")},
             "storage": storage, "schedule": "*-*-* 02:30"},
            {"name": self.cron_job, "source": {"engine": "files", "path": str(self.root / "data")},
             "storage": storage, "schedule": "15 3 * * *", "scheduler": "cron"},
        ]

    def wrapper(self, job) -> Path:
        return self.root / "opt/songmetrix-backup/bin" / ("songmetrix-backup-" + job)

    def events(self, job) -> list:
        log = self.root / "var/log/songmetrix-backup/events.jsonl"
        lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [line for line in lines if line["job"] == job]


def wrapper_value(wrapper: Path, name: str) -> str:
    """A shell variable the wrapper sets (lock_dir, lock, skips), unquoted."""
    match = re.search(r"^%s=(.*)$" % name, wrapper.read_text(), re.M)
    assert match, "the wrapper sets no %s" % name
    return shlex.split(match.group(1))[0]


def run(wrapper: Path, **kwargs):
    return subprocess.run([str(wrapper)], capture_output=True, text=True, env=ENV, timeout=600, **kwargs)


SINCE = "2026-12-01T02:30:00Z"


@contextlib.contextmanager
def held(lock: str):
    """The lock held by another process, as by a wrapper's run still going (which names itself in it)."""
    holder = subprocess.Popen(["flock", "-o", lock, "sleep", "120"])  # -o: the lock dies with flock, not sleep
    try:
        for _ in range(100):
            if subprocess.run(["flock", "-n", lock, "true"]).returncode != 0:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the holder never took %s" % lock)
        Path(lock).write_text("pid %d\nsince %s\n" % (holder.pid, SINCE))
        yield
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fleet = LockFleet(tmp_path_factory.mktemp("locks"))
    fleet.first = fleet.run(fleet.lock_jobs())
    yield fleet
    lock_dir = Path(wrapper_value(fleet.wrapper(fleet.timer_job), "lock_dir"))
    for job in (fleet.timer_job, fleet.cron_job):
        for path in lock_dir.glob(job + "[.-]*"):
            path.unlink()


def test_the_lock_folder_is_roots_own_and_a_runtime_directory_of_the_services(fleet):
    wrapper = fleet.wrapper(fleet.timer_job)
    assert wrapper_value(wrapper, "lock_dir") == "/run/songmetrix-backup"
    assert wrapper_value(wrapper, "lock") == "/run/songmetrix-backup/%s.wrapper.lock" % fleet.timer_job
    service = (fleet.root / ("etc/systemd/system/songmetrix-backup-%s.service" % fleet.timer_job)).read_text()
    for line in ("RuntimeDirectory=songmetrix-backup", "RuntimeDirectoryMode=0700", "RuntimeDirectoryPreserve=yes",
                 "SuccessExitStatus=75"):
        assert re.search("^%s$" % line, service, re.M), service
    # The dump module's host lock goes to the same folder (lock.dir in the jobs file).
    jobs = yaml.safe_load((fleet.root / "etc/songmetrix-backup/jobs.yml").read_text())["songmetrix_backup_jobs"]
    assert {job["lock"]["dir"] for job in jobs} == {"/run/songmetrix-backup"}
    if SYSTEMD_ANALYZE:
        units = sorted(str(p) for p in (fleet.root / "etc/systemd/system").glob("songmetrix-backup-*"))
        proc = subprocess.run([SYSTEMD_ANALYZE, "verify", *units], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_another_user_can_neither_create_nor_hold_the_lock_so_backups_keep_running(fleet):
    """The attack of the issue: a local user creates and flocks the wrapper's lock file; with the old
    wrapper (a lock in /run/lock, 1777) every run then exited 75, which systemd counts as a success."""
    wrapper = fleet.wrapper(fleet.timer_job)
    lock = wrapper_value(wrapper, "lock")
    attacker = subprocess.Popen([OTHER_PYTHON, "-c", """
import fcntl, os, sys, time
try:
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError as exc:
    print("refused:", exc.strerror, flush=True)
    sys.exit(0)
print("held", flush=True)
time.sleep(120)
""", lock], user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[], stdout=subprocess.PIPE, text=True)
    try:
        said = attacker.stdout.readline().strip()
        proc = run(wrapper)
    finally:
        attacker.kill()
        attacker.wait()
    assert proc.returncode == 0, "rc=%d: %s\n%s" % (proc.returncode, proc.stdout[-3000:], proc.stderr)
    assert said.startswith("refused"), said
    assert "%s: ok" % fleet.timer_job in proc.stdout
    lock_dir = os.stat(wrapper_value(wrapper, "lock_dir"))
    assert lock_dir.st_uid == 0 and stat.S_IMODE(lock_dir.st_mode) & 0o077 == 0


def test_skipped_runs_are_counted_and_notified_and_too_many_in_a_row_fail(fleet):
    wrapper = fleet.wrapper(fleet.timer_job)
    lock, skips = wrapper_value(wrapper, "lock"), Path(wrapper_value(wrapper, "skips"))
    before = len(fleet.events(fleet.timer_job))
    with held(lock):
        first = run(wrapper)
        assert first.returncode == 75, first.stdout[-3000:] + first.stderr
        assert "this run is skipped (1 in a row; from 2 in a row a skipped run fails)" in first.stderr
        assert skips.read_text() == "1\n"
        second = run(wrapper)
        assert second.returncode == 1, second.stdout[-3000:] + second.stderr
        assert re.search(r"job %s failed on .* skipped 2 times in a row: another run has held %s since %s"
                         % (fleet.timer_job, re.escape(lock), SINCE), second.stderr), second.stderr
        assert skips.read_text() == "2\n"
    events = fleet.events(fleet.timer_job)[before:]
    assert [(e["event"], e["status"]) for e in events] == [("skipped", "skipped"), ("skipped", "skipped"),
                                                            ("failure", "failed")], events
    assert "this scheduled run is skipped, 1 in a row (2 or more in a row fail the job)" in events[0]["message"]
    assert "holds its lock (since %s); this scheduled run is skipped, 2 in a row" % SINCE in events[2]["message"]
    assert "0 ok, 1 failed" in second.stdout and "%s: FAILED" % fleet.timer_job in second.stdout
    # The lock is free again: the next run backs up and ends the count.
    third = run(wrapper)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr
    assert not skips.exists()
    assert Path(lock).read_text() == ""  # the holder's pid and start time, while a run holds it
    assert [e["event"] for e in fleet.events(fleet.timer_job)[before + 3:]] == ["start", "success"]


def test_a_cron_run_logs_to_its_file_and_prints_only_a_failure_notice(fleet):
    wrapper = fleet.wrapper(fleet.cron_job)
    lock = wrapper_value(wrapper, "lock")
    log = fleet.root / ("var/log/songmetrix-backup/%s.log" % fleet.cron_job)
    ok = run(wrapper)  # stdout is a pipe, as under cron
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", ""), ok
    assert "job %s ends at" % fleet.cron_job in log.read_text() and "with exit status 0" in log.read_text()
    with held(lock):
        skipped = run(wrapper)
        assert (skipped.returncode, skipped.stdout, skipped.stderr) == (75, "", ""), skipped
        assert "this run is skipped (1 in a row" in log.read_text()
        failing = run(wrapper)
    assert failing.returncode == 1 and failing.stderr == "", failing
    (notice,) = failing.stdout.splitlines()  # what cron mails
    assert notice.startswith("songmetrix-backup: job %s failed on " % fleet.cron_job)
    assert notice.endswith("skipped 2 times in a row: another run has held %s since %s" % (lock, SINCE))


@pytest.mark.parametrize("case", ["writable by others", "of another user", "a symlink", "symlinked lock file"])
def test_the_wrapper_refuses_a_lock_folder_or_file_others_could_control(fleet, tmp_path, case):
    """The rendered wrapper with its lock folder pointed elsewhere (its lines lock_dir=, lock=, skips=)."""
    os.chmod(tmp_path, 0o755)
    folder = tmp_path / "locks"
    target = tmp_path / "root-only"
    target.write_text("keep\n")
    os.chmod(target, 0o600)
    if case == "writable by others":
        folder.mkdir()
        os.chmod(folder, 0o777)
    elif case == "of another user":
        folder.mkdir(mode=0o700)
        os.chown(folder, NOBODY.pw_uid, NOBODY.pw_gid)
    elif case == "a symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "elsewhere")
    else:
        folder.mkdir(mode=0o700)
        (folder / "job.wrapper.lock").symlink_to(target)
    text = fleet.wrapper(fleet.timer_job).read_text()
    for name, value in (("lock_dir", folder), ("lock", folder / "job.wrapper.lock"), ("skips", folder / "job.skips")):
        text = re.sub(r"^%s=.*$" % name, "%s=%s" % (name, shlex.quote(str(value))), text, flags=re.M)
    copy = tmp_path / "wrapper"
    copy.write_text(text)
    os.chmod(copy, 0o700)
    proc = run(copy)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    expected = "the lock file" if case == "symlinked lock file" else "the lock folder %s" % folder
    assert expected in proc.stderr and "refusing to run" in proc.stderr, proc.stderr
    assert "starts at" not in proc.stdout and target.read_text() == "keep\n"
