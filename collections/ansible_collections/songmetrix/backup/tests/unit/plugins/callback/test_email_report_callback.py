"""email_report: redaction, merging of role records and module results, ordering, subject, options."""

import email
import email.policy

import pytest

from ansible_collections.songmetrix.backup.plugins.callback import email_report as er
from ansible_collections.songmetrix.backup.plugins.plugin_utils.redact import (
    MASK,
    collect_secrets,
    is_secret_name,
    redact_data,
    redact_text,
)

SECRET = "Zq8-very-long-secret-value-0042"


# ---------------------------------------------------------------- redaction

@pytest.mark.parametrize("text, expected", [
    ("postgresql://backup:%s@db1:5432/orders" % SECRET, "postgresql://backup:********@db1:5432/orders"),
    ("mongodb+srv://app:p%40ss@cluster0/x", "mongodb+srv://app:********@cluster0/x"),
    # a connection string that lost a slash in a path join
    ("/srv/x/postgresql:/backup:%s@db/orders missing" % SECRET, "/srv/x/postgresql:/backup:********@db/orders missing"),
    ("https://example.com/path", "https://example.com/path"),
    ("connect password=%s host=db" % SECRET, "connect password=%s host=db" % MASK),
    ("PGPASSWORD='a b c' pg_dump", "PGPASSWORD=%s pg_dump" % MASK),
    ("secret_key: abc123, region x", "secret_key: %s, region x" % MASK),
    ("api_token=abc&x=1", "api_token=%s&x=1" % MASK),
    ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer %s" % MASK),
    ("password authentication failed for user backup", "password authentication failed for user backup"),
    (None, None),
])
def test_redact_text_patterns(text, expected):
    assert redact_text(text) == expected


def test_redact_text_known_secrets_longest_first_and_short_ones_ignored():
    text = "a %s b %s c on" % (SECRET, SECRET[:10])
    out = redact_text(text, secrets={SECRET, SECRET[:10], "on"})
    assert SECRET not in out and SECRET[:10] not in out
    assert out == "a %s b %s c on" % (MASK, MASK)


def test_redact_walks_dicts_and_lists():
    data = {
        "manifest_key": "job/2026/x.manifest.json",
        "source": {"engine": "postgresql", "password": SECRET, "ssl": True},
        "storage": {"type": "s3", "secret_key": "abcd", "access_key": "AKIA", "key": "k"},
        "notes": ["uri postgresql://u:%s@h/db" % SECRET],
        "webhook": {"token": None},
    }
    out = redact_data(data)
    assert out["manifest_key"] == data["manifest_key"]
    assert out["source"] == {"engine": "postgresql", "password": MASK, "ssl": True}
    assert out["storage"] == {"type": "s3", "secret_key": MASK, "access_key": MASK, "key": MASK}
    assert out["notes"] == ["uri postgresql://u:********@h/db"]
    assert out["webhook"] == {"token": None}
    assert data["source"]["password"] == SECRET  # the input is left alone


@pytest.mark.parametrize("name, secret", [
    ("password", True), ("db_password", True), ("passphrase", True), ("private_key_passphrase", True),
    ("session_token", True), ("api_key", True), ("key", True), ("ssh_key", True), ("client_secret", True),
    ("manifest_key", False), ("host_key", False), ("kms_key_id", False), ("job", False), ("path", False),
    ("_ansible_no_log", False), (3, False),
])
def test_is_secret_name(name, secret):
    assert is_secret_name(name) is secret


def test_collect_secrets_from_task_args():
    args = {
        "job": "orders",
        "source": {"engine": "mongodb", "path": "/srv/x", "password": SECRET,
                   "mongodb": {"uri": "mongodb://u:pw12@h/db"}},
        "storage": {"type": "s3", "bucket": "b", "secret_key": "s3cret-key", "access_key": "AKIA1234"},
        "encryption": {"method": "age", "passphrase": "pass-phrase", "recipients": ["age1xyz"]},
        "_ansible_tmpdir": "/tmp/x",
        "short": {"password": "abc"},
    }
    assert collect_secrets(args) == {SECRET, "mongodb://u:pw12@h/db", "s3cret-key", "AKIA1234", "pass-phrase"}


# ---------------------------------------------------------------- rows

def step(job, status, module="dump", error=None, **data):
    base = {"module": module, "job": job, "status": status, "engine": None, "database": None, "raw_size": None,
            "stored_size": None, "duration": None, "manifest_key": None, "sha256": None, "check_mode": False,
            "error": error, "censored": False}
    base.update(data)
    return base


def test_role_record_is_the_source_of_truth_for_censored_steps():
    steps = {"h1": [
        step("pg", "failed", error="dump: " + er.CENSORED_MSG, censored=True),
        step("files", "changed", censored=True),
    ]}
    role = {"h1": {
        "pg": {"job": "pg", "failed": True, "engine": "postgresql", "what": "orders", "msg": "cannot connect"},
        "files": {"job": "files", "failed": False, "engine": "files", "what": "/srv/files", "raw_size": 3000,
                  "stored_size": 1000, "sha256": "ab" * 32, "duration": 1.5, "manifest_key": "files/x.manifest.json",
                  "check_mode": False},
    }}
    rows = er.build_rows(steps, role, {}, set(), {})
    assert [(r["job"], r["status"]) for r in rows] == [("pg", "failed"), ("files", "changed")]
    assert rows[0]["errors"] == ["cannot connect"]
    cell = er.cells(rows[1])
    assert cell["size"] == "1000 B" and cell["ratio"] == "3.0x" and cell["duration"] == "1.5 s"
    assert cell["sha256"] == "ab" * 6 and cell["database"] == "/srv/files"


def test_a_skipped_run_is_its_own_status_not_ok():
    """A scheduled run that found its job locked (roles/backup_schedule's wrapper) backed nothing up."""
    role = {"h1": {
        "pg": {"job": "pg", "failed": False, "skipped": True, "engine": "postgresql", "what": "orders",
               "msg": "another run of job pg holds its lock; this scheduled run is skipped, 1 in a row"},
        "files": {"job": "files", "failed": False, "engine": "files", "what": "/srv", "stored_size": 10,
                  "manifest_key": "files/x.manifest.json", "check_mode": False},
    }}
    rows = er.build_rows({}, role, {}, set(), {})
    by = {r["job"]: r for r in rows}
    assert by["pg"]["status"] == "skipped" and "holds its lock" in by["pg"]["errors"][0]
    assert er.subject(rows, "[backup]") == "[backup] SKIPPED 1/2 jobs"
    assert er.summary_line(rows) == "2 job(s) on 1 host(s): 0 failed, 1 skipped, 1 changed, 0 ok"
    assert [r["job"] for r in rows] == ["pg", "files"]  # before the changed one


def test_module_results_without_role_and_synthetic_rows():
    steps = {
        "h1": [step("pg", "changed", engine="postgresql", database="orders", stored_size=10, raw_size=40,
                    manifest_key="pg/k.manifest.json", sha256="cd" * 32),
               step("pg", "failed", module="verify", error="verify: sha256 mismatch")],
        "h2": [step("files", "ok")],
    }
    rows = er.build_rows(steps, {}, {"h3": "unreachable: ssh timeout"}, {"h2", "h3"}, {"h2": "Assert: no job"})
    by = {(r["host"], r["job"]): r for r in rows}
    assert by[("h1", "pg")]["status"] == "failed"
    assert by[("h1", "pg")]["manifest_key"] == "pg/k.manifest.json"
    assert by[("h1", "pg")]["errors"] == ["verify: sha256 mismatch"]
    assert by[("h2", "(run)")]["errors"] == ["Assert: no job"]
    assert by[("h3", "(host unreachable)")]["status"] == "failed"
    assert er.subject(rows, "[backup]", "prod") == "[backup] FAILED 3/4 jobs - prod"


def test_step_from_result_job_and_info_modules():
    data = {"changed": True, "manifest": {"job": "j", "engine": "sqlite", "database": "/d.db", "raw_size": 9,
                                          "stored_size": 3, "sha256": "e" * 64, "duration_seconds": 0.2},
            "manifest_key": "j/k.manifest.json"}
    got = er.step_from_result("dump", {"job": "other"}, data, "changed", "Dump")
    assert got["job"] == "j" and got["stored_size"] == 3 and got["duration"] == 0.2
    assert er.step_from_result("backup_info", {}, {"backups": []}, "ok", "List") is None
    failed = er.step_from_result("backup_info", {}, {"msg": "no bucket"}, "failed", "List")
    assert failed["job"] == "backup_info: List" and failed["error"] == "backup_info: no bucket"
    censored = er.step_from_result("dump", {"job": "pg", "source": {"engine": "postgresql", "database": "o"}},
                                   {"censored": "hidden", "changed": False}, "failed", "Dump")
    assert censored["error"] == "dump: " + er.CENSORED_MSG and censored["engine"] == "postgresql"


def _row(host, job, status):
    row = er.new_row(host, job)
    row["status"] = status
    return row


def test_ordering_failures_first_in_text_and_html():
    rows = [_row("b-host", "zeta", "ok"), _row("b-host", "alpha", "changed"), _row("a-host", "ok-job", "ok"),
            _row("b-host", "omega", "failed"), _row("c-host", "<script>", "failed")]
    assert [(h, [r["job"] for r in rs]) for h, rs in er.group_by_host(rows)] == [
        ("b-host", ["omega", "alpha", "zeta"]), ("c-host", ["<script>"]), ("a-host", ["ok-job"])]
    text = er.render_text(rows)
    assert text.index("omega") < text.index("alpha") < text.index("zeta") < text.index("ok-job")
    assert text.index("Host: b-host") < text.index("Host: c-host") < text.index("Host: a-host")
    page = er.render_html(rows, title="t")
    assert page.index("omega") < page.index("alpha") < page.index("zeta") < page.index("ok-job")
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_subject_status_words():
    assert er.subject([_row("h", "a", "ok"), _row("h", "b", "ok")]) == "[backup] OK 2/2 jobs"
    assert er.subject([_row("h", "a", "ok"), _row("h", "b", "changed")], "[bk]", "") == "[bk] CHANGED 1/2 jobs"
    assert er.subject([_row("h", "a", "failed")], "", "staging") == "FAILED 1/1 jobs - staging"


@pytest.mark.parametrize("value, text", [(None, ""), (512, "512 B"), (1536, "1.5 KiB"), (5 * 1024 ** 3, "5.0 GiB")])
def test_human_size(value, text):
    assert er.human_size(value) == text


@pytest.mark.parametrize("value, text", [(None, ""), (0.25, "0.2 s"), (125, "2m 05s"), (3725, "1h 02m")])
def test_human_duration(value, text):
    assert er.human_duration(value) == text


# ---------------------------------------------------------------- the plugin object

DEFAULTS = {"smtp_host": "localhost", "smtp_port": None, "ssl": False, "starttls": False, "ca_file": None,
            "allow_plaintext_login": False, "user": None, "password": None, "sender": None,
            "to": ["ops@example.com"], "cc": [], "send_on": "always", "subject_prefix": "[backup]",
            "environment": "", "timeout": 30}


def plugin(**options):
    callback = er.CallbackModule()
    values = dict(DEFAULTS, **options)
    callback.get_option = values.__getitem__
    return callback


@pytest.mark.parametrize("options, problem", [
    ({"to": []}, "no recipient"),
    ({"to": [" ", ""]}, "no recipient"),
    ({"send_on": "sometimes"}, "send_on must be"),
    ({"ssl": True, "starttls": True}, "exclude each other"),
    ({"smtp_port": 70000}, "smtp_port"),
    ({"timeout": 0}, "timeout"),
    ({"password": "x"}, "no user"),
    ({"user": "u", "password": "x"}, "refusing to send the login of u to localhost:25 over a connection without TLS"),
    ({"user": "u"}, "set starttls = true (port 587) or ssl = true (port 465)"),
    ({"user": "u", "ssl": True, "ca_file": "/nonexistent/ca.pem"}, "ca_file /nonexistent/ca.pem is not a file"),
    ({"to": ["not-an-address"]}, "not an email address"),
])
def test_invalid_options(options, problem):
    opts, reason = plugin(**options)._settings()
    assert opts is None and problem in reason


def test_a_login_goes_over_tls_or_with_allow_plaintext_login():
    for options in ({"ssl": True}, {"starttls": True}, {"allow_plaintext_login": True}):
        opts, reason = plugin(user="u", password="p", **options)._settings()
        assert reason is None and opts["user"] == "u", options
    # no login, nothing to protect: a local relay without TLS stays possible
    assert plugin()._settings()[1] is None


def test_default_ports_and_sender():
    opts, reason = plugin()._settings()
    assert reason is None and opts["smtp_port"] == 25 and opts["sender"].startswith("ansible@")
    assert plugin(ssl=True)._settings()[0]["smtp_port"] == 465
    assert plugin(smtp_port=587, starttls=True)._settings()[0]["smtp_port"] == 587


class FakeRole:
    def get_name(self, include_role_fqcn=True):
        return "backup_run"


class FakeTask:
    def __init__(self, action, role=None, no_log=False):
        self.action = action
        self._resolved_action = action
        self._role = role
        self.no_log = no_log
        self.args = {}


class FakeHost:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class FakeResult:
    def __init__(self, host, action, result, args=None, name="task", role=None, no_log=False):
        self.host = FakeHost(host)
        self.task = FakeTask(action, role, no_log)
        self.task.args = dict(args or {}, _ansible_no_log=no_log)
        self.result = result
        self.task_name = name


class FakeStats:
    def __init__(self, failures=None, dark=None):
        self.failures = failures or {}
        self.dark = dark or {}


def test_whole_flow_sends_one_redacted_mail(monkeypatch):
    callback = plugin(environment="prod", sender="backup@example.com", cc=["audit@example.com"])
    sent = []
    monkeypatch.setattr(callback, "_send", lambda message, opts: sent.append(message))
    dump_args = {"job": "pg", "source": {"engine": "postgresql", "database": "orders", "password": SECRET}}
    callback.v2_playbook_on_task_start(FakeTask("songmetrix.backup.dump"), False)
    callback.v2_runner_on_failed(FakeResult("db1", "songmetrix.backup.dump", {"censored": "x", "changed": False},
                                            dump_args, no_log=True, role=FakeRole()))
    records = [{"job": "pg", "failed": True, "engine": "postgresql", "what": "orders",
                "msg": "connect failed: password=%s at postgresql://backup:%s@db/orders" % (SECRET, SECRET)},
               {"job": "files", "failed": False, "engine": "files", "what": "/srv/f", "stored_size": 10,
                "raw_size": 20, "manifest_key": "files/k.manifest.json", "sha256": "f" * 64, "check_mode": False}]
    callback.v2_runner_on_ok(FakeResult("db1", "ansible.builtin.set_fact",
                                        {"ansible_facts": {"backup_run_results": records}}, role=FakeRole()))
    callback.v2_runner_on_failed(FakeResult("db1", "ansible.builtin.fail", {"msg": "1 of 2 failed"}))
    callback.v2_playbook_on_stats(FakeStats(failures={"db1": 1}))
    (message,) = sent
    raw = message.as_bytes()
    assert SECRET.encode() not in raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "[backup] FAILED 1/2 jobs - prod"
    assert parsed["Cc"] == "audit@example.com"
    texts = {p.get_content_type(): p.get_content() for p in parsed.walk() if p.get_content_maintype() == "text"}
    assert set(texts) == {"text/plain", "text/html"}
    for text in texts.values():
        assert SECRET not in text
        assert text.index("connect failed") < text.index("files/k.manifest.json")
        assert "(run)" not in text  # the role's own fail task is not a job


def test_no_backup_task_no_mail_and_send_on(monkeypatch):
    quiet = plugin()
    monkeypatch.setattr(quiet, "_send", lambda message, opts: pytest.fail("sent"))
    quiet.v2_runner_on_ok(FakeResult("h", "ansible.builtin.ping", {"ping": "pong"}))
    quiet.v2_playbook_on_stats(FakeStats())

    for send_on, status, expect in (("failure", "changed", 0), ("change", "ok", 0), ("change", "changed", 1),
                                    ("failure", "failed", 1), ("always", "ok", 1)):
        callback = plugin(send_on=send_on)
        sent = []
        monkeypatch.setattr(callback, "_send", lambda message, opts, sent=sent: sent.append(message))
        result = {"changed": status == "changed", "manifest": {"job": "j"}}
        if status == "failed":
            callback.v2_runner_on_failed(FakeResult("h", "songmetrix.backup.dump", dict(result, msg="x")))
        else:
            callback.v2_runner_on_ok(FakeResult("h", "songmetrix.backup.dump", result))
        callback.v2_playbook_on_stats(FakeStats())
        assert len(sent) == expect, (send_on, status)


def test_loop_items_are_rows(monkeypatch):
    callback = plugin()
    sent = []
    monkeypatch.setattr(callback, "_send", lambda message, opts: sent.append(message))
    args = {"job": "{{ item }}", "source": {"engine": "files", "path": "/srv/{{ item }}"}}
    ok = FakeResult("h", "songmetrix.backup.dump", {"changed": True, "item": "a", "manifest": {"job": "a"}}, args)
    bad = FakeResult("h", "songmetrix.backup.dump", {"msg": "no such path", "item": "b"}, args, name="Dumps")
    callback.v2_runner_item_on_ok(ok)
    callback.v2_runner_item_on_failed(bad)
    callback.v2_runner_on_failed(FakeResult("h", "songmetrix.backup.dump", {"results": [ok.result, bad.result]},
                                            args, name="Dumps"))
    rows = er.build_rows(callback._steps, {}, {}, set(), {})
    assert [(r["job"], r["status"], r["errors"], r["database"]) for r in rows] == [
        ("dump: Dumps (b)", "failed", ["dump: no such path"], None), ("a", "changed", [], None)]


def test_smtp_down_is_a_warning(monkeypatch):
    callback = plugin(smtp_host="127.0.0.1", smtp_port=1, timeout=2)
    warnings = []
    monkeypatch.setattr(callback._display, "warning", lambda msg, *a, **k: warnings.append(msg))
    callback.v2_runner_on_ok(FakeResult("h", "songmetrix.backup.dump", {"changed": True, "manifest": {"job": "j"}}))
    callback.v2_playbook_on_stats(FakeStats())
    assert len(warnings) == 1 and "no mail sent to 127.0.0.1:1" in warnings[0]
