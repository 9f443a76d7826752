"""A real mid-dump source fault through `ansible-playbook playbooks/backup.yml`, and what every report says.

The job backs up a PostgreSQL database of a few MB to local storage that already holds five older backups,
with a `retention` that would delete two of them after a good backup. Its `source.executable` is a wrapper
around the real pg_dump: the real dump streams through it, and after 1 MiB of output the wrapper kills the
real pg_dump and then itself with SIGKILL, so the module sees pg_dump killed by signal 9 in the middle of
the stream. The run reports to everything at once: a JSON webhook, a healthchecks ping URL, the JSON event
log, the metrics textfile dir and the email_report callback (a real SMTP server, aiosmtpd).

Then the same job without the wrapper: the backup succeeds, the reports say so, and the retention prunes,
which shows that the older backups left alone by the failed run were there for the taking.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.songmetrix.backup.plugins.module_utils.storage_local import LocalStorage
from tests.history import make_history
from tests.integration.http_receiver import HttpReceiver
from tests.modrun import ansible_playbook

REPO = Path(__file__).resolve().parents[2]
JOB = "fault-pg"
KILL_AFTER = 1024 * 1024  # bytes of pg_dump's output before the wrapper kills it

pytestmark = pytest.mark.slow

WRAPPER = """#!{python}
# pg_dump, killed by SIGKILL after {limit} bytes of a custom-format dump; any other call is the real pg_dump.
import json, os, signal, subprocess, sys
real, args = {real!r}, sys.argv[1:]
if "--format=custom" not in args or "--schema-only" in args:
    os.execv(real, [real] + args)
child = subprocess.Popen([real] + args, stdout=subprocess.PIPE)
sent, ended = 0, False
while sent < {limit}:
    data = child.stdout.read(65536)
    if not data:
        ended = True
        break
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    sent += len(data)
with open({mark!r}, "w") as handle:
    json.dump({{"sent": sent, "ended": ended}}, handle)
child.kill()
os.kill(os.getpid(), signal.SIGKILL)
"""


def metric(path, name):
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not in {path}")


def test_pg_dump_killed_mid_stream_is_reported_failed_everywhere_and_nothing_is_pruned(
        tmp_path, pg_server, pg_database, smtp, run_module):
    controller, box = smtp
    pg_server.psql("CREATE TABLE big AS SELECT g, md5(g::text) || repeat('x', 200) AS t "
                   "FROM generate_series(1, 40000) g", dbname=pg_database)

    # pg_dump's wrapper, with the real psql and pg_restore beside it (the source takes them from there)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    mark = tmp_path / "killed.json"
    wrapper = bindir / "pg_dump"
    wrapper.write_text(WRAPPER.format(python=sys.executable, real=pg_server.tool("pg_dump"), limit=KILL_AFTER,
                                      mark=str(mark)))
    wrapper.chmod(0o755)
    for tool in ("psql", "pg_restore"):
        os.symlink(pg_server.tool(tool), bindir / tool)

    # five older backups, one a day
    root = tmp_path / "backups"
    today = datetime.datetime.now(datetime.timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
    history = make_history(LocalStorage(str(root)), "", JOB, [today - datetime.timedelta(days=n)
                                                              for n in range(1, 6)])
    history_files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert len(history_files) == 10

    metrics_dir = tmp_path / "textfile"
    metrics_dir.mkdir()
    event_log = tmp_path / "events.jsonl"
    source = dict(engine="postgresql", host=pg_server.host, port=pg_server.port, user=pg_server.user,
                  password=pg_server.password, database=pg_database)
    storage = dict(type="local", path=str(root))

    def run(rx, executable=None):
        job = dict(name=JOB, source=dict(source, executable=executable) if executable else source,
                   storage=storage, retention=dict(keep_last=4))
        host_vars = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "songmetrix_backup_jobs": [job],
            "songmetrix_backup_metrics_dir": str(metrics_dir),
            "songmetrix_backup_event_log": str(event_log),
            "songmetrix_backup_notify": {
                "webhooks": [{"type": "json", "url": rx.url("/hook"), "events": ["start", "success", "failure"]}],
                "healthchecks": {"url": rx.url("/ping/check-1")},
            },
        }
        inventory = tmp_path / "inventory.json"
        inventory.write_text(json.dumps({"all": {"hosts": {"db-host": host_vars}}}))
        inventory.chmod(0o600)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SONGMETRIX_BACKUP_EMAIL_") and k != "ANSIBLE_FORCE_COLOR"}
        env.update(
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_HOME=str(tmp_path / "ansible-home"),
            ANSIBLE_CALLBACKS_ENABLED="songmetrix.backup.email_report",
            SONGMETRIX_BACKUP_EMAIL_SMTP_HOST="127.0.0.1",
            SONGMETRIX_BACKUP_EMAIL_SMTP_PORT=str(controller.port),
            SONGMETRIX_BACKUP_EMAIL_TO="ops@example.com",
            SONGMETRIX_BACKUP_EMAIL_FROM="backup@example.com",
            PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
        )
        return subprocess.run([ansible_playbook(), "-i", str(inventory), "playbooks/backup.yml"], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=600)

    with HttpReceiver() as rx:
        proc = run(rx, executable=str(wrapper))
        requests = list(rx.requests)
    output = proc.stdout + proc.stderr
    cause = "pg_dump was killed by signal 9"

    # The dump was killed in the middle of its stream, not at its end.
    killed = json.loads(mark.read_text())
    assert killed == {"sent": KILL_AFTER, "ended": False}, killed

    # The play fails; the summary names the job and the cause.
    assert proc.returncode == 2, output[-4000:]
    assert f"{JOB}: FAILED (postgresql {pg_database})" in proc.stdout, proc.stdout[-4000:]
    assert f"  error     {cause}" in proc.stdout
    assert f"1 of 1 backup job(s) failed on db-host: {JOB}" in proc.stdout
    # prune never started: the role stops at the failed dump
    assert f"Prune old backups of {JOB}" not in output

    # The email says FAILED, with the cause.
    (message,) = box.messages()
    assert message["Subject"] == "[backup] FAILED 1/1 jobs"
    assert message["X-Songmetrix-Backup-Status"] == "FAILED"
    plain = message.get_body(("plain",)).get_content()
    row = next(line for line in plain.splitlines() if JOB in line)
    assert row.startswith("FAILED") and cause in plain, plain

    # The webhook got the start and a failure event naming the cause; the ping went to /fail.
    events = [json.loads(r.body) for r in requests if r.path == "/hook"]
    assert [(e["job"], e["event"], e["status"]) for e in events] == [(JOB, "start", "running"),
                                                                     (JOB, "failure", "failed")]
    assert cause in events[1]["message"] and events[1]["manifest_key"] is None
    pings = [r for r in requests if r.path.startswith("/ping/")]
    assert [r.path for r in pings] == ["/ping/check-1/start", "/ping/check-1/fail"]
    assert cause in pings[1].text

    # Metrics: the last attempt failed, and there has been no success.
    prom = metrics_dir / f"songmetrix_backup_{JOB}.prom"
    assert metric(prom, "songmetrix_backup_last_status") == 0
    assert metric(prom, "songmetrix_backup_last_success_timestamp_seconds") == 0
    assert metric(prom, "songmetrix_backup_last_attempt_timestamp_seconds") > 0

    # The event log: a start and a failure line with the cause.
    lines = [json.loads(line) for line in event_log.read_text().splitlines()]
    assert [(e["event"], e["status"]) for e in lines] == [("start", "running"), ("failure", "failed")]
    assert cause in lines[1]["message"]

    # Storage: the same backups as before, nothing incomplete, no partial file of any name; the attempt
    # record says failed, which keeps a standalone prune from deleting anything.
    info = run_module("backup_info", dict(job=JOB, storage=storage, last_attempt=True))
    assert info.rc == 0, info.describe()
    assert sorted(b["manifest_key"] for b in info.result["backups"]) == sorted(b.manifest_key for b in history)
    assert info.result["incomplete"] == []
    assert info.result["last_attempt"]["status"] == "failed" and cause in info.result["last_attempt"]["error"]
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted(history_files + [f"{JOB}/last-attempt.json"]), files

    # The same job with the real pg_dump: it backs up, says so everywhere, and its retention prunes.
    box.envelopes.clear()
    with HttpReceiver() as rx:
        proc = run(rx)
        requests = list(rx.requests)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert f"{JOB}: ok (postgresql {pg_database})" in proc.stdout
    assert "prune     deleted 2 backup(s)" in proc.stdout, proc.stdout[-3000:]
    (message,) = box.messages()
    assert message["Subject"] == "[backup] CHANGED 1/1 jobs"
    assert [json.loads(r.body)["event"] for r in requests if r.path == "/hook"] == ["start", "success"]
    assert metric(prom, "songmetrix_backup_last_status") == 1
    assert metric(prom, "songmetrix_backup_last_success_timestamp_seconds") > 0
    info = run_module("backup_info", dict(job=JOB, storage=storage, last_attempt=True))
    kept = [b["manifest_key"] for b in info.result["backups"]]
    assert len(kept) == 4 and kept[1:] == [b.manifest_key for b in history[:3]]
    assert info.result["last_attempt"]["status"] == "ok"
