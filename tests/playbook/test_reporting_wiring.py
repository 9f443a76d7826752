"""backup.yml reports each job: a start and an outcome event to the webhooks and the JSON event log,
and a Prometheus textfile per job, for a succeeding and a failing job in one run."""

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.http_receiver import HttpReceiver
from tests.playbook.test_demo import manifests, run_playbook

pytestmark = pytest.mark.slow

SECRET = "Hook-Token-5d1f0c7e-never-in-a-payload"


def metric(path, name):
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if sample.name == name:
                return sample
    raise AssertionError(f"{name} not in {path}")


def test_jobs_report_to_webhooks_event_log_and_metrics(tmp_path):
    var_dir = tmp_path / "var"
    metrics_dir = tmp_path / "textfile"
    metrics_dir.mkdir()
    event_log = tmp_path / "log" / "events.jsonl"
    missing = Path(var_dir) / "nowhere" / "missing.sqlite3"
    with HttpReceiver() as rx:
        settings = {
            "songmetrix_backup_metrics_dir": str(metrics_dir),
            "songmetrix_backup_event_log": str(event_log),
            # Host level: a generic JSON webhook on every event (pings: tests/integration/test_notify.py).
            "songmetrix_backup_notify": {"webhooks": [
                {"type": "json", "url": rx.url(f"/hook/{SECRET}"), "events": ["start", "success", "failure"]}]},
        }
        extra = tmp_path / "reporting.json"
        extra.write_text(json.dumps(settings))
        proc = run_playbook(var_dir, "-e", f"@{extra}", "-e", f"songmetrix_demo_sqlite_path={missing}")
        requests = list(rx.requests)
    assert proc.returncode != 0, proc.stdout  # demo-sqlite fails: its file is missing
    assert len(manifests(var_dir, "demo-files")) == 1

    events = [json.loads(line) for line in event_log.read_text().splitlines()]
    assert [(e["job"], e["event"]) for e in events] == [
        ("demo-sqlite", "start"), ("demo-sqlite", "failure"), ("demo-files", "start"), ("demo-files", "success")]
    assert str(missing) in events[1]["message"]
    assert events[3]["manifest_key"].startswith("demo-files/")

    bodies = [json.loads(r.body) for r in requests if r.path.startswith("/hook/")]
    assert [(b["job"], b["event"]) for b in bodies] == [(e["job"], e["event"]) for e in events]
    for r in requests:
        assert SECRET not in r.body.decode()
    assert SECRET not in proc.stdout

    ok, failed = metrics_dir / "songmetrix_backup_demo-files.prom", metrics_dir / "songmetrix_backup_demo-sqlite.prom"
    assert metric(ok, "songmetrix_backup_last_status").value == 1
    assert metric(ok, "songmetrix_backup_stored_bytes").value > 0
    assert metric(ok, "songmetrix_backup_last_status").labels["engine"] == "files"
    assert metric(failed, "songmetrix_backup_last_status").value == 0
    assert metric(failed, "songmetrix_backup_last_success_timestamp_seconds").value == 0
