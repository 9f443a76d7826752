"""The notify module against real HTTP receivers on 127.0.0.1: payloads, pings, retries, redaction."""

import json
import os
import socket
import stat

import pytest
from http_receiver import HttpReceiver

# Never send the test's requests through a proxy from the environment.
ENV = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
PASSWORD = "Zq7-vX2pLm9_RtY4wK8sNb3Hc6Jd1Fg5Qe0Ua7Tz"  # long, and nowhere else in the tests' data
DETAILS = dict(engine="postgresql", database="orders", raw_size=1073741824, stored_size=215000000,
               duration_seconds=250.2,
               manifest_key="prod/orders-db/2026/11/23/orders-db-20261123T020000Z.manifest.json",
               sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
               storage=dict(type="s3", bucket="backups", prefix="prod"), kind="scheduled")


@pytest.fixture
def rx():
    with HttpReceiver() as receiver:
        yield receiver


def notify(run_module, args, **kw):
    return run_module("notify", args, env=ENV, timeout=120, **kw)


def warnings_of(res):
    return res.warnings


def only(requests):
    assert len(requests) == 1, requests
    return requests[0]


def test_payload_shape_per_type_and_success_ping(run_module, rx, tmp_path):
    hooks = [dict(type=t, url=rx.url("/hook/%s/T0K3N" % t), events=["success", "failure"])
             for t in ("slack", "discord", "teams", "json")]
    log = tmp_path / "log" / "events.jsonl"
    res = notify(run_module, dict(job="orders-db", event="success", host="db1", details=DETAILS, webhooks=hooks,
                                  healthchecks=dict(url=rx.url("/ping/4a1f-uuid")), event_log=str(log)))
    assert res.rc == 0 and not res.failed, res.describe()
    assert res.result["changed"] is True and res.result["logged"] is True
    assert not res.result.get("warnings"), res.describe()
    targets = {e["type"]: e for e in res.result["sent"]}
    assert set(targets) == {"slack", "discord", "teams", "json", "healthchecks"}
    for entry in targets.values():
        assert entry["status_code"] == 200 and entry["attempts"] == 1 and "error" not in entry, entry
        expected = "http://127.0.0.1:%d/…" % rx.port
        assert entry["target"] == expected, entry  # success ping: the bare URL, redacted

    for kind in ("slack", "discord", "teams", "json"):
        req = only(rx.on("/hook/%s/" % kind))
        assert req.method == "POST" and req.headers["Content-Type"] == "application/json"
        assert req.headers["User-Agent"].startswith("songmetrix.backup")
    slack = json.loads(only(rx.on("/hook/slack/")).body)
    assert set(slack) == {"text", "blocks"}
    assert [b["type"] for b in slack["blocks"]] == ["header", "section", "context"]
    assert slack["blocks"][0]["text"] == {"type": "plain_text", "emoji": True,
                                          "text": ":white_check_mark: Backup succeeded: orders-db on db1"}
    fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in slack["blocks"][1]["fields"]}
    assert fields["*Database*"] == "orders" and fields["*Size*"] == "1.0 GiB raw → 205.0 MiB stored"
    assert fields["*Storage*"] == "s3:backups/prod" and fields["*Duration*"] == "4m 10s"
    assert len(slack["blocks"][1]["fields"]) <= 10 and slack["text"].startswith("Backup succeeded: orders-db on db1")

    discord = json.loads(only(rx.on("/hook/discord/")).body)
    assert set(discord) == {"content", "embeds", "allowed_mentions"} and discord["allowed_mentions"] == {"parse": []}
    embed = only(discord["embeds"])
    assert embed["title"] == "Backup succeeded: orders-db on db1" and embed["color"] == 0x2E7D32
    assert "description" not in embed and embed["footer"] == {"text": "songmetrix.backup"}
    assert {"name": "Engine", "value": "postgresql", "inline": True} in embed["fields"]
    assert embed["timestamp"] == res.result["event"]["time"]

    teams = json.loads(only(rx.on("/hook/teams/")).body)
    assert teams["type"] == "message"
    attachment = only(teams["attachments"])
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive" and attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert [b["type"] for b in card["body"]] == ["TextBlock", "FactSet"]
    assert card["body"][0]["color"] == "Good"
    assert {"title": "Manifest", "value": DETAILS["manifest_key"]} in card["body"][1]["facts"]

    event = json.loads(only(rx.on("/hook/json/")).body)
    assert event == res.result["event"]
    assert event["job"] == "orders-db" and event["event"] == "success" and event["status"] == "ok"
    assert event["raw_size"] == DETAILS["raw_size"] and event["details"]["sha256"] == DETAILS["sha256"]
    assert event["storage"] == "s3:backups/prod" and event["time"].endswith("Z") and event["version"] == 1

    ping = only(rx.on("/ping/"))
    assert ping.path == "/ping/4a1f-uuid" and ping.method == "POST"
    assert ping.text.startswith("Backup succeeded: orders-db on db1")

    lines = log.read_text().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert {k: line[k] for k in ("host", "job", "event", "status", "duration_seconds", "raw_size", "stored_size",
                                 "manifest_key")} == dict(host="db1", job="orders-db", event="success", status="ok",
                                                          duration_seconds=250.2, raw_size=DETAILS["raw_size"],
                                                          stored_size=DETAILS["stored_size"],
                                                          manifest_key=DETAILS["manifest_key"])
    assert line["time"] == event["time"] and line["message"] is None
    assert stat.S_IMODE(os.stat(log).st_mode) in (0o640, 0o600)


def test_pings_on_their_paths_and_fail_body_keeps_the_tail(run_module, rx, tmp_path):
    ping = dict(url=rx.url("/ping/key/orders-db/"))  # a slug URL with a trailing slash
    hooks = [dict(type="slack", url=rx.url("/hook/slack/X"))]  # default events: failure only
    log_path = tmp_path / "job.log"
    lines = ["line %05d: dumping table ä€𝄞 %s" % (i, "x" * 40) for i in range(2000)]
    lines.append("pg_dump: error: connection to server lost — the last line")
    log_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert log_path.stat().st_size > 100_000

    for event in ("start", "success", "failure"):
        res = notify(run_module, dict(job="orders-db", event=event, healthchecks=ping, webhooks=hooks,
                                      summary="connection lost" if event == "failure" else None,
                                      log_path=str(log_path)))
        assert res.rc == 0 and not res.result.get("warnings"), res.describe()
    assert [r.path for r in rx.on("/ping/")] == ["/ping/key/orders-db/start", "/ping/key/orders-db",
                                                 "/ping/key/orders-db/fail"]
    start, success, fail = rx.on("/ping/")
    assert start.body == b"" and success.text.startswith("Backup succeeded")
    assert len(fail.body) <= 10_000 and len(fail.body) > 9_000
    text = fail.body.decode("utf-8")  # valid UTF-8 although cut inside multi-byte text
    assert text.endswith("pg_dump: error: connection to server lost — the last line\n")
    assert text.startswith("[... truncated ...]\nline ")
    assert len(rx.on("/hook/")) == 1  # slack only on the failure


def test_fail_ping_from_log_option_and_message(run_module, rx):
    big = "é" * 20_000 + "\nfinal: dump failed with exit status 1"
    res = notify(run_module, dict(job="j1", event="failure", summary="exit 1", log=big,
                                  healthchecks=dict(url=rx.url("/p/abc"), timeout=5)))
    assert res.rc == 0, res.describe()
    body = only(rx.on("/p/abc/fail")).body
    assert len(body) <= 10_000 and body.decode("utf-8").endswith("final: dump failed with exit status 1\n")
    entry = only(res.result["sent"])
    assert entry["target"] == "http://127.0.0.1:%d/…/fail" % rx.port and entry["status_code"] == 200


def test_retry_once_on_500(run_module, rx):
    rx.behave("/hook/flaky", ["500", "200"])
    rx.behave("/hook/broken", ["503"])
    hooks = [dict(type="json", url=rx.url("/hook/flaky/1"), events=["failure"]),
             dict(type="json", url=rx.url("/hook/broken/2"), events=["failure"])]
    res = notify(run_module, dict(job="j", event="failure", summary="boom", webhooks=hooks))
    assert res.rc == 0 and not res.failed, res.describe()
    flaky, broken = res.result["sent"]
    assert flaky["status_code"] == 200 and flaky["attempts"] == 2 and "error" not in flaky
    assert flaky["retried_because"].startswith("HTTP 500")
    assert broken["status_code"] == 503 and broken["attempts"] == 2 and broken["error"].startswith("HTTP 503")
    assert len(rx.on("/hook/flaky")) == 2 and len(rx.on("/hook/broken")) == 2
    assert rx.on("/hook/flaky")[0].body == rx.on("/hook/flaky")[1].body
    assert any("not delivered" in w and "HTTP 503" in w for w in warnings_of(res)), res.describe()


def test_404_is_a_warning_and_not_retried(run_module, rx):
    rx.behave("/gone", ["404"])
    res = notify(run_module, dict(job="j", event="start", healthchecks=dict(url=rx.url("/gone/uuid"))))
    assert res.rc == 0 and not res.failed, res.describe()
    entry = only(res.result["sent"])
    assert entry["status_code"] == 404 and entry["attempts"] == 1 and entry["error"].startswith("HTTP 404")
    assert len(rx.on("/gone")) == 1
    assert any("http://127.0.0.1:%d/…/start" % rx.port in w for w in warnings_of(res))


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_receiver_down_is_a_warning_unless_fail_on_error(run_module, tmp_path):
    port = _closed_port()
    url = "http://127.0.0.1:%d/services/T000/B000/%s" % (port, PASSWORD)
    log = tmp_path / "events.jsonl"
    args = dict(job="j", event="failure", summary="x", webhooks=[dict(type="slack", url=url, timeout=2)],
                event_log=str(log))
    res = notify(run_module, args)
    assert res.rc == 0 and not res.failed, res.describe()
    entry = only(res.result["sent"])
    assert entry["status_code"] is None and entry["attempts"] == 2 and entry["error"].startswith("connection failed")
    assert entry["target"] == "http://127.0.0.1:%d/…" % port
    assert warnings_of(res) and res.result["logged"] is True
    assert PASSWORD not in res.stdout + res.stderr

    res = notify(run_module, dict(args, fail_on_error=True))
    assert res.failed and "notification failed" in res.msg and "slack http://127.0.0.1:%d/…" % port in res.msg
    assert res.result["sent"][0]["attempts"] == 2 and res.result["logged"] is True
    assert PASSWORD not in res.stdout + res.stderr
    assert len(log.read_text().splitlines()) == 2  # the log line is written before sending, both times


def test_hanging_receiver_times_out_without_retry(run_module, rx):
    rx.behave("/slow", ["hang"])
    res = notify(run_module, dict(job="j", event="failure", webhooks=[dict(type="discord", url=rx.url("/slow/x"),
                                                                           timeout=1)]))
    assert res.rc == 0 and not res.failed, res.describe()
    entry = only(res.result["sent"])
    assert "timeout" in entry["error"] and entry["attempts"] == 1 and entry["status_code"] is None
    assert res.duration < 8 and len(rx.on("/slow")) == 1


def test_no_secret_in_requests_result_or_event_log(run_module, rx, tmp_path):
    hook_url = rx.url("/services/T000/B000/" + PASSWORD)
    ping_url = rx.url("/ping/" + PASSWORD[::-1])
    log = tmp_path / "events.jsonl"
    message = ("pg_dump: error: connection to postgresql://backup:%s@db1:5432/orders failed; "
               "PGPASSWORD=%s; posted to %s" % (PASSWORD, PASSWORD, hook_url))
    details = dict(DETAILS, password=PASSWORD, source=dict(engine="postgresql", password=PASSWORD,
                                                           uri="mysql://root:%s@db2/x" % PASSWORD),
                   encryption=dict(passphrase=PASSWORD), api_token=PASSWORD, notes="secret: %s" % PASSWORD,
                   hook=hook_url)
    job_log = "\n".join(["step %d" % i for i in range(50)] + ["mysqldump --password=%s failed" % PASSWORD])
    hooks = [dict(type=t, url=hook_url, events=["failure"]) for t in ("slack", "discord", "teams", "json")]
    args = dict(job="orders-db", event="failure", summary=message, details=details, log=job_log, webhooks=hooks,
                healthchecks=dict(url=ping_url), event_log=str(log))

    res = notify(run_module, args, check_mode=True)
    assert res.rc == 0 and len(res.result["would_send"]) == 5, res.describe()
    assert PASSWORD not in res.stdout and PASSWORD[::-1] not in res.stdout

    res = notify(run_module, args)
    assert res.rc == 0 and not res.result.get("warnings"), res.describe()
    assert len(rx.requests) == 5
    for req in rx.requests:
        assert PASSWORD not in req.text and PASSWORD[::-1] not in req.text, req
        assert "********" in req.text
    for output in (res.stdout, res.stderr, log.read_text()):
        assert PASSWORD not in output and PASSWORD[::-1] not in output
    bodies = [json.loads(r.body) for r in rx.on("/services/")]
    event = only([b for b in bodies if b.get("source") == "songmetrix.backup"])
    assert event["details"]["password"] == "********" and event["details"]["source"]["password"] == "********"
    assert event["details"]["source"]["uri"] == "mysql://root:********@db2/x"
    assert event["details"]["encryption"] == {"passphrase": "********"} and event["details"]["api_token"] == "********"
    assert event["details"]["manifest_key"] == DETAILS["manifest_key"]  # storage keys are not secrets
    assert "postgresql://backup:********@db1:5432/orders" in event["message"]
    line = json.loads(log.read_text())
    assert line["message"] == event["message"]


def test_check_mode_sends_and_writes_nothing(run_module, rx, tmp_path):
    log = tmp_path / "events.jsonl"
    res = notify(run_module, dict(job="j", event="start", event_log=str(log), healthchecks=dict(url=rx.url("/p/u")),
                                  webhooks=[dict(type="json", url=rx.url("/h/1"), events=["start"]),
                                            dict(type="slack", url=rx.url("/h/2"))]), check_mode=True)
    assert res.rc == 0 and res.result["changed"] is True, res.describe()
    assert rx.requests == [] and not log.exists()
    assert res.result["sent"] == [] and res.result["logged"] is False
    would = res.result["would_send"]
    assert [(w["type"], w["target"]) for w in would] == [("json", "http://127.0.0.1:%d/…" % rx.port),
                                                         ("healthchecks", "http://127.0.0.1:%d/…/start" % rx.port)]
    assert would[0]["payload"]["event"] == "start" and would[1]["payload"] == ""
    assert res.result["would_log"]["status"] == "running"


def test_event_log_appends_json_lines(run_module, tmp_path):
    log = tmp_path / "var" / "log" / "events.jsonl"
    for event in ("start", "failure"):
        res = notify(run_module, dict(job="j", event=event, host="h1", summary="line one\nline \"two\"",
                                      event_log=str(log)))
        assert res.rc == 0 and res.result["logged"], res.describe()
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(r["event"], r["status"]) for r in records] == [("start", "running"), ("failure", "failed")]
    assert records[1]["message"] == "line one\nline \"two\"" and records[1]["host"] == "h1"
    assert stat.S_IMODE(log.parent.stat().st_mode) & 0o027 == 0
    assert stat.S_IMODE(log.parent.parent.stat().st_mode) & 0o027 == 0  # var/log too, not only the last level


def test_bad_url_is_refused_before_anything_is_sent(run_module, rx, tmp_path):
    res = notify(run_module, dict(job="j", event="failure", event_log=str(tmp_path / "e.jsonl"),
                                  webhooks=[dict(type="json", url="ftp://example.com/" + PASSWORD)]))
    assert res.failed and "webhooks[0].url must be an http:// or https:// URL" in res.msg, res.describe()
    assert PASSWORD not in res.stdout and not (tmp_path / "e.jsonl").exists()


def test_a_skipped_run_goes_to_the_log_ping_the_event_log_and_the_webhooks_that_ask_for_it(run_module, rx, tmp_path):
    """`skipped`: a scheduled run found the job's lock held (roles/backup_schedule); it is recorded, not silent."""
    log = tmp_path / "events.jsonl"
    hooks = [dict(type="json", url=rx.url("/hook/json/T"), events=["failure", "skipped"]),
             dict(type="slack", url=rx.url("/hook/slack/T"), events=["skipped"]),
             dict(type="discord", url=rx.url("/hook/discord/T"))]  # default events: failure only
    summary = "another run of job orders-db holds its lock; this run is skipped (2 in a row, alert after 3)"
    res = notify(run_module, dict(job="orders-db", event="skipped", host="db1", summary=summary,
                                  details=dict(consecutive_skips=2, alert_after=3), webhooks=hooks,
                                  healthchecks=dict(url=rx.url("/ping/uuid")), event_log=str(log)))
    assert res.rc == 0 and not res.result.get("warnings"), res.describe()
    event = json.loads(only(rx.on("/hook/json/")).body)
    assert (event["event"], event["status"], event["message"]) == ("skipped", "skipped", summary)
    assert event["details"] == dict(consecutive_skips=2, alert_after=3)
    slack = json.loads(only(rx.on("/hook/slack/")).body)
    assert slack["blocks"][0]["text"]["text"] == ":warning: Backup SKIPPED: orders-db on db1"
    assert rx.on("/hook/discord/") == []
    ping = only(rx.on("/ping/"))
    assert ping.path == "/ping/uuid/log"  # recorded in the check's events, its state unchanged
    assert ping.text == "Backup SKIPPED: orders-db on db1\n%s\n" % summary
    (line,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert (line["event"], line["status"], line["message"]) == ("skipped", "skipped", summary)
