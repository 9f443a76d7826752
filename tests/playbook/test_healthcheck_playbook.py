"""playbooks/healthcheck.yml on inventories/demo: the table, a critical job failing the play, alert_after."""

import json
from pathlib import Path

import pytest

from tests.playbook.test_demo import REPO, run_playbook

pytestmark = pytest.mark.slow

PLAYBOOK = "playbooks/healthcheck.yml"
NOTIFY = REPO / "collections/ansible_collections/songmetrix/backup/plugins/modules/notify.py"


@pytest.fixture
def var_dir(tmp_path):
    var = tmp_path / "var"
    run_playbook(var, check=0)  # the demo backup creates the demo database and files
    return var


def table_line(stdout, job):
    (line,) = [line for line in stdout.splitlines() if line.strip(" -'").startswith(job + " ")]
    return line


def test_healthy_demo(var_dir):
    proc = run_playbook(var_dir, playbook=PLAYBOOK, check=0)
    for job in ("demo-sqlite", "demo-files"):
        line = table_line(proc.stdout, job)
        assert " healthy " in line and " ok " in line, line
    assert "2 checked, 0 critical, 0 warning" in proc.stdout
    backups = Path(var_dir) / "backups"
    assert not list(backups.rglob(".healthcheck*"))  # the probe was deleted, and its folder


def test_critical_job_fails_play_and_alerts_on_second_run(var_dir, tmp_path):
    state = tmp_path / "health-state"
    extra = ("-e", "songmetrix_demo_sqlite_path=%s" % (tmp_path / "missing.sqlite3"),
             "-e", "songmetrix_backup_healthcheck_state_dir=%s" % state,
             "-e", "songmetrix_backup_healthcheck_alert_after=2")
    first = run_playbook(var_dir, *extra, playbook=PLAYBOOK)
    assert first.returncode != 0
    line = table_line(first.stdout, "demo-sqlite")
    assert " critical " in line and "ALERT" not in line, line
    assert "healthy" in table_line(first.stdout, "demo-files")
    assert "Critical on localhost: demo-sqlite" in first.stdout
    assert "1 critical" in first.stdout

    second = run_playbook(var_dir, *extra, playbook=PLAYBOOK)
    assert second.returncode != 0
    assert "ALERT" in table_line(second.stdout, "demo-sqlite")
    saved = json.loads((state / "healthcheck-demo-sqlite.json").read_text())
    assert saved["consecutive_failures"] == 2 and saved["alerted"] is True

    back = run_playbook(var_dir, "-e", "songmetrix_backup_healthcheck_state_dir=%s" % state,
                        "-e", "songmetrix_backup_healthcheck_alert_after=2", playbook=PLAYBOOK, check=0)
    assert "recovered" in table_line(back.stdout, "demo-sqlite")


def test_check_mode_and_single_job(var_dir, tmp_path):
    state = tmp_path / "health-state"
    proc = run_playbook(var_dir, "--check", "-e", "job=demo-files",
                        "-e", "songmetrix_backup_healthcheck_state_dir=%s" % state, playbook=PLAYBOOK, check=0)
    assert "1 checked" in proc.stdout
    assert " skipped " in table_line(proc.stdout, "demo-files")  # no probe in check mode
    assert not state.exists()


@pytest.mark.skipif(not NOTIFY.exists(), reason="songmetrix.backup.notify is not in this checkout yet")
def test_alert_is_sent_with_notify_settings(var_dir, tmp_path):
    log = tmp_path / "events.jsonl"
    proc = run_playbook(var_dir, "-e", "songmetrix_demo_sqlite_path=%s" % (tmp_path / "missing.sqlite3"),
                        "-e", "songmetrix_backup_event_log=%s" % log, "-e", "job=demo-sqlite", playbook=PLAYBOOK)
    assert proc.returncode != 0
    assert "Notify the alert of demo-sqlite" in proc.stdout
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events and events[-1]["job"] == "demo-sqlite" and events[-1]["event"] == "failure", events
