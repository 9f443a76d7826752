"""Issue 17: the secrets the redaction used to miss, on the module side.

Webhook header values (X-Signature), Supabase connection strings and the key=value secrets inside connection
strings (Azure's AccountKey=, a SAS token's sig=, SQL Server's Password= and Pwd=) were not treated as secrets:
a notification that carried them in its summary, details or log posted them as they were, and a module whose
error text held them returned them. The email_report callback's side is tests/playbook/test_email_report.py.
"""

import json
import os

import pytest

from tests.integration.http_receiver import HttpReceiver

ENV = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}


def cores(*names):
    return {name: "%s-%s" % (name, os.urandom(6).hex()) for name in names}


def found(secrets, text):
    return sorted(name for name, core in secrets.items() if core in text)


@pytest.fixture
def rx():
    with HttpReceiver() as receiver:
        yield receiver


def test_notify_masks_headers_connection_strings_and_their_secret_fields(run_module, rx, tmp_path):
    secrets = cores("hooksig", "othersig", "connstring", "accountkey", "sassig", "sqlpassword", "odbcpwd", "logsig")
    hook_signature = secrets.pop("hooksig")  # the webhook's own header: it must reach the webhook, nowhere else
    connection_string = "postgresql://postgres.ref@db.example:6543/postgres?application_name=%s" % (
        secrets["connstring"])
    summary = ("az storage: DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={accountkey};"
               "EndpointSuffix=core.windows.net rejected; SAS ?sv=2022-11-02&sp=rl&sig={sassig}").format(**secrets)
    details = {"engine": "mssql", "connection_string": connection_string,
               "headers": {"X-Signature": secrets["othersig"]},
               "odbc": "Driver=x;Server=db;UID=sa;PWD={odbcpwd};Encrypt=yes".format(**secrets)}
    log = "\n".join(["sqlcmd -S db", "Server=db;User ID=sa;Password={sqlpassword};".format(**secrets),
                     "> POST /hook", "> X-Signature: {logsig}".format(**secrets), "< 401"])
    event_log = tmp_path / "events.jsonl"
    args = dict(job="erp", event="failure", summary=summary, details=details, log=log, event_log=str(event_log),
                webhooks=[dict(type="json", url=rx.url("/hook"), events=["failure"],
                               headers={"X-Signature": hook_signature})])

    res = run_module("notify", args, env=ENV, timeout=120)
    assert res.rc == 0 and not res.result.get("warnings"), res.describe()
    (request,) = rx.requests
    assert request.headers.get("X-Signature") == hook_signature
    assert hook_signature not in request.text
    for where, text in (("webhook body", request.text), ("module output", res.stdout + res.stderr),
                        ("event log", event_log.read_text())):
        assert found(secrets, text) == [], (where, text)
        assert hook_signature not in text, where
    event = json.loads(request.body)
    assert event["details"]["connection_string"] == "********"
    assert event["details"]["headers"] == {"X-Signature": "********"}
    assert "AccountKey=********;EndpointSuffix=core.windows.net" in event["message"]
    assert "&sig=********" in event["message"]
    assert event["details"]["odbc"] == "Driver=x;Server=db;UID=sa;PWD=********;Encrypt=yes"


def test_a_module_error_masks_connection_string_fields_and_header_values(run_module, tmp_path):
    secrets = cores("accountkey", "sassig", "pwd", "xsig")
    leaky = ("AccountKey={accountkey};EndpointSuffix=x sig={sassig} Server=db;Pwd={pwd};UID=sa "
             "'X-Signature': '{xsig}'").format(**secrets)
    storage = tmp_path / "storage"
    storage.mkdir()
    res = run_module("dump", dict(job="leaky", source=dict(engine="files", path=str(tmp_path / "missing" / leaky)),
                                  storage=dict(type="local", path=str(storage))), timeout=120)
    assert res.rc != 0, res.describe()
    assert "does not exist" in res.result["msg"], res.describe()
    # (the echo of the module's arguments, "invocation", holds the path as given: no option of it is no_log)
    assert found(secrets, res.result["msg"]) == [], res.result["msg"]
    assert "AccountKey=********;EndpointSuffix=x sig=******** Server=db;Pwd=********;UID=sa" in res.result["msg"]
