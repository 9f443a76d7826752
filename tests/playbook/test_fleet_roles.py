"""Fleet rollout roles: schedule checks, unit/cron/wrapper rendering, cleanup, idempotence, a real
scheduled run through the wrapper, and backup_client's package plan.

playbooks/install.yml runs with `-c local` against this machine, but every directory the role
backup_schedule writes to (units, cron.d, wrappers, jobs file, state, locks) is pointed at a
temporary root; packages and the venv are not installed (the wrapper uses this venv's
ansible-playbook). systemd is not PID 1 here: units are written and checked with
`systemd-analyze verify`, never started.
"""

import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.songmetrix.backup.plugins.module_utils import schedule  # noqa: E402
from tests.modrun import ansible_playbook  # noqa: E402

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
SIGNING_KEY = "fleet-signing-key-" + "f" * 24


# --- schedule checks (pure Python, plus systemd-analyze when present) ---------------------------

@pytest.mark.parametrize("expr", ["30 2 * * *", "*/15 * * * *", "0 3 * * mon-fri", "0 0 1,15 * *",
                                  "5 4 * jan,jul sun", "0 1-5/2 * * 0-7", "@daily", "@hourly"])
def test_cron_good(expr):
    schedule.parse_cron(expr)


@pytest.mark.parametrize("expr, reason", [
    ("61 * * * *", "61 is outside 0-59"),
    ("* * * *", "5 fields"),
    ("* 24 * * *", "24 is outside 0-23"),
    ("0 0 0 * *", "0 is outside 1-31"),
    ("0 0 * 13 *", "13 is outside 1-12"),
    ("0 0 * * 8", "8 is outside 0-7"),
    ("*/0 * * * *", "step"),
    ("5-1 * * * *", "backwards"),
    ("@reboot", "not a backup schedule"),
    ("0 0 * * * echo", "5 fields"),
    ("0 0 * * funday", "not a number"),
    ("0 0 % * *", "%"),
])
def test_cron_bad(expr, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        schedule.parse_cron(expr)


@pytest.mark.parametrize("spec", ["daily", "*-*-* 02:30", "Mon..Fri 02:00", "Sat,Sun *-*-1..7 04:00 UTC",
                                  "*-*~01 03:00", "*:0/15", "2026-*-* 01:02:03", "weekly Europe/Berlin"])
def test_oncalendar_good(spec):
    schedule.check_oncalendar_syntax(spec)
    if SYSTEMD_ANALYZE:
        assert schedule.check_oncalendar(spec) == "systemd-analyze"


@pytest.mark.parametrize("spec", ["bogus", "*-*-* 25:00", "*-13-* 02:00", "Mon..Fri 02:61", "02:30 Mars/Olympus",
                                  "Funday 02:00", ""])
def test_oncalendar_bad(spec):
    with pytest.raises(ValueError):
        schedule.check_oncalendar_syntax(spec)
    if SYSTEMD_ANALYZE and spec:
        assert schedule.systemd_analyze_calendar(spec)[0] is False


def test_plan_names_the_job_and_adds_the_timezone():
    jobs = [
        {"name": "pg-orders", "schedule": "*-*-* 02:30", "timezone": "Europe/Berlin"},
        {"name": "maria", "schedule": "15 3 * * *", "scheduler": "cron"},
        {"name": "broken-cron", "schedule": "61 3 * * *", "scheduler": "cron"},
        {"name": "broken-timer", "schedule": "*-*-* 25:00"},
        {"name": "bad-tz", "schedule": "daily", "timezone": "Mars/Olympus"},
        {"name": "no-schedule"},
        {"name": "off", "schedule": "nonsense", "enabled": False},
        {"name": "pg-orders", "schedule": "daily"},
    ]
    result = schedule.plan(jobs, default_timezone="UTC")
    assert result["names"] == ["pg-orders", "maria"]
    timer = result["jobs"][0]
    assert timer["on_calendar"] == "*-*-* 02:30 Europe/Berlin"
    assert timer["unit"] == "songmetrix-backup-pg-orders"
    assert result["jobs"][1]["cron"] == {"minute": "15", "hour": "3", "day": "*", "month": "*", "weekday": "*"}
    assert result["jobs"][1]["timezone"] == "UTC"
    errors = "\n".join(result["errors"])
    assert "job 'broken-cron': schedule '61 3 * * *' is not a valid cron expression" in errors
    assert "job 'broken-timer': schedule '*-*-* 25:00' is not a valid OnCalendar string" in errors
    assert "job 'bad-tz': unknown timezone 'Mars/Olympus'" in errors
    assert "job 'pg-orders': the name is used by another job" in errors
    assert "off" not in errors and "no-schedule" not in errors


def test_cron_file_names_have_no_dots():
    assert schedule.cron_file_name("db.prod") == "songmetrix-backup-db_prod"


def test_venv_pins_match_requirements_txt():
    defaults = yaml.safe_load((REPO / "roles/backup_schedule/defaults/main.yml").read_text())
    wanted = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert defaults["backup_schedule_pip_packages"] == wanted


# --- install.yml against a temporary root ---------------------------------------------------------


def _env(tmp):
    env = dict(os.environ)
    env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOME=str(tmp / "ansible-home"),
               PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""))
    env.pop("ANSIBLE_FORCE_COLOR", None)
    return env


class Fleet:
    """A temporary root for the role's directories and an inventory of localhost."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.root = tmp / "root"
        for sub in ("etc/systemd/system", "etc/cron.d", "run/lock", "data", "backups"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.inventory = tmp / "hosts.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
        db = sqlite3.connect(str(self.root / "data/demo.sqlite3"))
        db.execute("CREATE TABLE plays (station TEXT, n INTEGER)")
        db.executemany("INSERT INTO plays VALUES (?, ?)", [("Alpha", 1), ("Beta", 2)])
        db.commit()
        db.close()

    def dirs(self):
        r = self.root
        return {
            "backup_schedule_install_packages": False,
            "backup_schedule_venv_install": False,
            "backup_schedule_ansible_playbook": ansible_playbook(),
            "backup_schedule_python_interpreter": sys.executable,
            "backup_schedule_base_dir": str(r / "opt/songmetrix-backup"),
            "backup_schedule_config_dir": str(r / "etc/songmetrix-backup"),
            "backup_schedule_state_dir": str(r / "var/lib/songmetrix-backup"),
            "backup_schedule_log_dir": str(r / "var/log/songmetrix-backup"),
            "backup_schedule_lock_dir": str(r / "run/lock"),
            "backup_schedule_unit_dir": str(r / "etc/systemd/system"),
            "backup_schedule_cron_dir": str(r / "etc/cron.d"),
            "backup_schedule_systemd_manage": "false",
            "backup_schedule_verify_units": "true" if SYSTEMD_ANALYZE else "false",
        }

    def jobs(self, names=("demo-sqlite", "files.cron", "hourly")):
        r = self.root
        storage = {"type": "local", "path": str(r / "backups")}
        all_jobs = {
            "demo-sqlite": {"name": "demo-sqlite", "source": {"engine": "sqlite", "path": str(r / "data/demo.sqlite3")},
                            "storage": storage, "compression": "zstd", "schedule": "*-*-* 02:30",
                            "timezone": "Europe/Berlin", "randomized_delay": "5m",
                            "spool_dir": str(r / "spool")},
            "files.cron": {"name": "files.cron", "source": {"engine": "files", "path": str(r / "data")},
                           "storage": storage, "schedule": "15 3 * * mon-fri", "scheduler": "cron",
                           "timezone": "America/New_York"},
            "hourly": {"name": "hourly", "source": {"engine": "files", "path": str(r / "data")},
                       "storage": storage, "schedule": "hourly"},
            "manual-only": {"name": "manual-only", "source": {"engine": "files", "path": str(r / "data")},
                            "storage": storage},
        }
        return [all_jobs[n] for n in names]

    def run(self, jobs, *extra, tags="backup_schedule", check=0):
        variables = dict(self.dirs(), songmetrix_backup_jobs=jobs, backup_run_timezone="UTC",
                         songmetrix_backup_event_log=str(self.root / "var/log/songmetrix-backup/events.jsonl"),
                         songmetrix_backup_signing={"key": SIGNING_KEY})
        vars_file = self.tmp / "vars.json"
        vars_file.write_text(json.dumps(variables))
        argv = [ansible_playbook(), "-i", str(self.inventory), "playbooks/install.yml",
                "-e", "@" + str(vars_file), "--tags", tags, *extra]
        proc = subprocess.run(argv, cwd=REPO, env=_env(self.tmp), capture_output=True, text=True, timeout=900)
        if check is not None:
            assert proc.returncode == check, "rc=%s\n%s\n%s" % (proc.returncode, proc.stdout[-6000:], proc.stderr)
        return proc

    def files(self):
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*")
                      if p.is_file() and "opt/songmetrix-backup/app/" not in str(p))


def recap_changed(stdout):
    match = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", stdout)
    assert match, stdout[-3000:]
    return int(match.group(1))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fleet = Fleet(tmp_path_factory.mktemp("fleet"))
    fleet.first = fleet.run(fleet.jobs())
    return fleet


@pytest.mark.slow
def test_units_cron_and_wrappers_are_written(fleet):
    r = fleet.root
    units = r / "etc/systemd/system"
    service = (units / "songmetrix-backup-demo-sqlite.service").read_text()
    timer = (units / "songmetrix-backup-demo-sqlite.timer").read_text()
    assert "OnCalendar=*-*-* 02:30 Europe/Berlin" in timer
    assert "Persistent=true" in timer and "RandomizedDelaySec=5m" in timer
    assert "OnCalendar=hourly UTC" in (units / "songmetrix-backup-hourly.timer").read_text()
    assert "OnFailure=songmetrix-backup-failure@%n.service" in service
    for line in ("ProtectSystem=strict", "PrivateTmp=true", "NoNewPrivileges=true", "IOSchedulingClass=idle",
                 "Nice=10", "SuccessExitStatus=75"):
        assert line in service
    rw = re.search(r"^ReadWritePaths=(.*)$", service, re.M).group(1).split()
    for path in (r / "backups", r / "spool", r / "data", r / "var/lib/songmetrix-backup", r / "run/lock",
                 r / "var/log/songmetrix-backup"):
        assert "-%s" % path in rw
    assert "ExecStart=%s/opt/songmetrix-backup/bin/songmetrix-backup-demo-sqlite" % r in service
    assert (units / "songmetrix-backup-failure@.service").is_file()
    # The cron job: its own file (no dot in the name), CRON_TZ first, the wrapper logging to a file.
    cron = (r / "etc/cron.d/songmetrix-backup-files_cron").read_text()
    assert cron.index('CRON_TZ="America/New_York"') < cron.index("15 3 * * mon-fri root ")
    entry = "%s/opt/songmetrix-backup/bin/songmetrix-backup-files.cron" % r
    assert re.search(r"^15 3 \* \* mon-fri root %s$" % re.escape(entry), cron, re.M), cron
    # the wrapper appends the run's output to the job's log itself (cron mails only a failure notice)
    assert ">>%s/var/log/songmetrix-backup/files.cron.log 2>&1" % r in Path(entry).read_text()
    assert not (units / "songmetrix-backup-files.cron.timer").exists()
    # Permissions: the jobs file holds secrets.
    jobs_file = r / "etc/songmetrix-backup/jobs.yml"
    assert stat.S_IMODE(jobs_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((r / "etc/songmetrix-backup").stat().st_mode) == 0o700
    jobs = yaml.safe_load(jobs_file.read_text())
    assert [j["name"] for j in jobs["songmetrix_backup_jobs"]] == ["demo-sqlite", "files.cron", "hourly"]
    assert all("schedule" not in j and "scheduler" not in j for j in jobs["songmetrix_backup_jobs"])
    assert jobs["backup_run_timezone"] == "UTC"
    assert jobs["songmetrix_backup_signing"] == {"key": SIGNING_KEY}  # scheduled runs sign too
    for name in ("demo-sqlite", "files.cron", "hourly"):
        wrapper = r / "opt/songmetrix-backup/bin" / ("songmetrix-backup-" + name)
        assert stat.S_IMODE(wrapper.stat().st_mode) == 0o750
        subprocess.run(["sh", "-n", str(wrapper)], check=True)
    assert (r / "opt/songmetrix-backup/app/playbooks/backup.yml").is_file()
    assert (r / "opt/songmetrix-backup/app/roles/backup_run/tasks/main.yml").is_file()
    assert (r / "opt/songmetrix-backup/app/collections/ansible_collections/songmetrix/backup/plugins/modules/dump.py"
            ).is_file()


@pytest.mark.slow
@pytest.mark.skipif(not SYSTEMD_ANALYZE, reason="systemd-analyze is not installed")
def test_units_pass_systemd_analyze_verify(fleet):
    units = sorted(str(p) for p in (fleet.root / "etc/systemd/system").glob("songmetrix-backup-*"))
    proc = subprocess.run([SYSTEMD_ANALYZE, "verify", *units], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Verify the units" in fleet.first.stdout


@pytest.mark.slow
def test_wrapper_runs_a_real_backup_and_flock_prevents_overlap(fleet):
    r = fleet.root
    wrapper = r / "opt/songmetrix-backup/bin/songmetrix-backup-demo-sqlite"
    (r / "spool").mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"]}
    proc = subprocess.run([str(wrapper)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    assert "demo-sqlite: ok" in proc.stdout
    (manifest,) = (r / "backups/demo-sqlite").rglob("*.manifest.json")
    data = json.loads(manifest.read_text())
    assert data["job"] == "demo-sqlite" and data["kind"] == "scheduled"
    assert not list((r / "backups").glob("files.cron*")), "only the named job runs"
    # A second run while the lock is held is skipped with exit status 75.
    lock = r / "run/lock/demo-sqlite.wrapper.lock"
    holder = subprocess.Popen(["flock", str(lock), "sleep", "30"])
    try:
        for _ in range(50):
            if subprocess.run(["flock", "-n", str(lock), "true"]).returncode != 0:
                break
            subprocess.run(["sleep", "0.1"])
        busy = subprocess.run([str(wrapper)], capture_output=True, text=True, env=env, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert busy.returncode == 75, busy.stdout + busy.stderr
    assert "holds" in busy.stderr and "skipped" in busy.stderr


@pytest.mark.slow
def test_second_run_changes_nothing_then_removed_jobs_are_cleaned_up(fleet):
    second = fleet.run(fleet.jobs())
    assert recap_changed(second.stdout) == 0, second.stdout[-6000:]
    before = fleet.files()
    # An unmanaged file with our prefix stays.
    foreign = fleet.root / "etc/cron.d/songmetrix-backup-handmade"
    foreign.write_text("# not written by the role\n")
    third = fleet.run(fleet.jobs(("demo-sqlite", "manual-only")))
    assert recap_changed(third.stdout) > 0
    after = fleet.files()
    gone = set(before) - set(after)
    assert gone == {
        "etc/cron.d/songmetrix-backup-files_cron",
        "opt/songmetrix-backup/bin/songmetrix-backup-files.cron",
        "opt/songmetrix-backup/bin/songmetrix-backup-hourly",
        "etc/systemd/system/songmetrix-backup-hourly.service",
        "etc/systemd/system/songmetrix-backup-hourly.timer",
    }, gone
    assert foreign.exists()
    assert (fleet.root / "etc/systemd/system/songmetrix-backup-demo-sqlite.timer").exists()
    assert not (fleet.root / "opt/songmetrix-backup/bin/songmetrix-backup-manual-only").exists()
    # Back to the full list: everything comes back.
    fleet.run(fleet.jobs())
    assert (fleet.root / "etc/cron.d/songmetrix-backup-files_cron").exists()


@pytest.mark.slow
def test_invalid_schedule_fails_before_anything_is_written(tmp_path):
    fleet = Fleet(tmp_path)
    jobs = fleet.jobs()
    jobs[1] = dict(jobs[1], schedule="15 27 * * *")
    proc = fleet.run(jobs, check=2)
    assert "job 'files.cron': schedule '15 27 * * *' is not a valid cron expression: hour: 27 is outside 0-23" \
        in proc.stdout
    assert fleet.files() == ["data/demo.sqlite3"]


@pytest.mark.slow
def test_backup_client_installs_only_what_the_jobs_need(tmp_path):
    fleet = Fleet(tmp_path)
    jobs = [
        {"name": "pg", "source": {"engine": "postgresql", "host": "db"}, "storage": {"type": "s3", "bucket": "b"},
         "compression": "lz4", "encryption": {"method": "age", "recipients": ["age1x"]}},
        {"name": "maria", "source": {"engine": "mariadb"}, "storage": {"type": "sftp", "host": "h", "path": "/b"},
         "compression": "gzip"},
        {"name": "mongo-off", "enabled": False, "source": {"engine": "mongodb"}, "storage": {"type": "local"}},
        {"name": "lite", "source": {"engine": "sqlite", "path": "/x"}, "storage": {"type": "local", "path": "/b"}},
    ]
    proc = fleet.run(jobs, "-e", "backup_client_plan_only=true", tags="backup_client")
    plan = proc.stdout[proc.stdout.index("Show the plan"):]
    packages = re.search(r"packages:\n((?:\s+- .*\n)+)", plan).group(1).split()
    packages = [p for p in packages if p != "-"]
    assert sorted(packages) == sorted(["mariadb-client", "lz4", "pigz", "gzip", "zstd", "age", "python3-boto3",
                                       "python3-paramiko", "sqlite3"])
    assert "postgresql: true" in plan and "mongodb: false" in plan
    # A SQL Server job without the EULA fails with a clear message.
    jobs.append({"name": "ms", "source": {"engine": "mssql"}, "storage": {"type": "local", "path": "/b"}})
    refused = fleet.run(jobs, "-e", "backup_client_plan_only=true", tags="backup_client", check=2)
    assert "backup_client_mssql_accept_eula: true" in refused.stdout
