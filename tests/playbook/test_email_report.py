"""The email_report callback against a real SMTP server (aiosmtpd) on 127.0.0.1.

Each test writes a small inventory and playbook under tmp_path (two local hosts, jobs with local
storage, the backup_run role plus a direct no_log dump task), runs ansible-playbook from the
checkout with the callback enabled through ANSIBLE_CALLBACKS_ENABLED and its options in the
environment, and reads what the server received.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult

from tests.servers import free_port
from tests.smtp_server import smtp_server
from tests.tls_certs import make_certificates
from tests.modrun import ansible_playbook

REPO = Path(__file__).resolve().parents[2]
SECRET = "Pw-9d41c7e2-b55f-4e0e-email-must-never-show-it"
CALLBACK = "songmetrix.backup.email_report"

pytestmark = pytest.mark.slow


def write_run(tmp_path, jobs, direct_no_log_task=False, fail_on_error=False, play_vars=None):
    """Inventory and playbook under tmp_path; returns (inventory, playbook)."""
    data = tmp_path / "data" / "files"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("hello\n" * 200)
    (data / "sub" / "b.txt").write_text("world\n" * 200)
    inventory = tmp_path / "hosts.yml"
    host = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    inventory.write_text(json.dumps({"all": {"hosts": {"db-a": host, "db-b": host}}}))
    plays = [{
        "name": "Back up",
        "hosts": "all",
        "gather_facts": False,
        "vars": {
            "backup_run_fail_on_error": fail_on_error,
            # Each host its own storage: both hosts back up the same jobs in the same second.
            "storage": {"type": "local", "path": str(tmp_path / "backups") + "/{{ inventory_hostname }}"},
            "songmetrix_backup_jobs": jobs,
            **(play_vars or {}),
        },
        "roles": ["backup_run"],
    }]
    if direct_no_log_task:
        plays.append({
            "name": "A direct dump with a password, no_log",
            "hosts": "db-a",
            "gather_facts": False,
            "tasks": [{
                "name": "Dump with a password",
                "block": [{
                    "name": "Dump pg-direct",
                    "songmetrix.backup.dump": {
                        "job": "pg-direct",
                        "source": {"engine": "postgresql", "host": "127.0.0.1", "port": 9, "user": "backup",
                                   "password": SECRET, "database": "orders", "connect_timeout": 2},
                        "storage": {"type": "local", "path": str(tmp_path / "backups" / "direct")},
                    },
                    "no_log": True,
                }],
                "rescue": [{"name": "Carry on", "ansible.builtin.debug": {"msg": "rescued"}}],
            }],
        })
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(plays))
    return inventory, playbook


def files_job(name, path):
    return {"name": name, "source": {"engine": "files", "path": str(path)}, "storage": "{{ storage }}"}


def run(tmp_path, inventory, playbook, ansible_config=None, **options):
    """ansible-playbook with the callback enabled and ``options`` as SONGMETRIX_BACKUP_EMAIL_* variables."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("SONGMETRIX_BACKUP_EMAIL_"):
            del env[key]
    env.update(
        ANSIBLE_CONFIG=str(ansible_config or REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_CALLBACKS_ENABLED=CALLBACK,
        PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
    )
    env.pop("ANSIBLE_FORCE_COLOR", None)
    env.update({f"SONGMETRIX_BACKUP_EMAIL_{key.upper()}": str(value) for key, value in options.items()})
    argv = [ansible_playbook(), "-i", str(inventory), str(playbook)]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def parts(message):
    found = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            found[part.get_content_type()] = part.get_content()
    return found


def manifests(tmp_path, host, job):
    return sorted((tmp_path / "backups" / host / job).rglob("*.manifest.json"))


def test_one_mail_failures_first_no_secret(smtp, tmp_path):
    controller, box = smtp
    # A connection string with credentials inside a job's path (not a pathlib join: keep the "//").
    secret_path = f"{tmp_path}/missing/postgresql://backup:{SECRET}@db.internal/orders"
    jobs = [files_job("files-ok", tmp_path / "data" / "files"), files_job("files-missing", secret_path)]
    inventory, playbook = write_run(tmp_path, jobs, direct_no_log_task=True)
    proc = run(tmp_path, inventory, playbook, smtp_host="127.0.0.1", smtp_port=controller.port,
               to="ops@example.com, dba@example.com", cc="audit@example.com", environment="test",
               **{"from": "backup@example.com"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]: songmetrix.backup.email_report" not in proc.stdout + proc.stderr

    assert len(box.envelopes) == 1
    envelope = box.envelopes[0]
    assert sorted(envelope.rcpt_tos) == ["audit@example.com", "dba@example.com", "ops@example.com"]
    (message,) = box.messages()
    # db-a: files-ok, files-missing, pg-direct (no_log, rescued); db-b: files-ok, files-missing.
    assert message["Subject"] == "[backup] FAILED 3/5 jobs - test"
    assert message["From"] == "backup@example.com"
    body = parts(message)
    assert set(body) == {"text/plain", "text/html"}

    # No secret anywhere: not in the raw message, not in any decoded part, not in the envelope.
    raw = envelope.original_content if envelope.original_content else envelope.content
    assert SECRET.encode() not in raw
    for text in body.values():
        assert SECRET not in text
        assert "postgresql://backup:********@db.internal/orders" in text

    for host in ("db-a", "db-b"):
        (manifest_path,) = manifests(tmp_path, host, "files-ok")
        manifest = json.loads(manifest_path.read_text())
        for kind, text in body.items():
            assert manifest["sha256"][:12] in text, kind
            assert manifest["sha256"][:13] not in text, kind
            assert f"files-ok/{manifest_path.relative_to(tmp_path / 'backups' / host / 'files-ok')}" in text

    plain = body["text/plain"]
    # A table per host; in each, failed rows before the successful one.
    sections = re.split(r"^Host: ", plain, flags=re.M)[1:]
    assert [s.splitlines()[0] for s in sections] == ["db-a", "db-b"]
    for section in sections:
        assert section.index("files-missing") < section.index("files-ok")
        assert section.index("FAILED") < section.index("changed")
    assert "pg-direct" in sections[0]
    assert "details hidden (no_log)" in sections[0]
    assert "does not exist or is not a directory" in plain

    page = body["text/html"]
    assert "<table" in page and "<link" not in page and "<script" not in page and "src=" not in page
    for section in page.split("<h3")[1:]:
        assert section.index("files-missing") < section.index("files-ok")
    assert page.index("Host: db-a") < page.index("Host: db-b")


def test_header_values_connection_strings_and_their_secret_fields_are_masked(smtp, tmp_path):
    """Issue 17: webhook header values (X-Signature, Authorization), a Supabase connection_string and the
    key=value secrets of connection strings (AccountKey=, SharedAccessSignature's sig=, Password=, pwd=) that
    show up in a job's error text, which the module that failed could not know, never reach the mail."""
    controller, box = smtp
    closed = free_port()
    cores = {name: "%s-%s" % (name, os.urandom(6).hex()) for name in (
        "xsignature", "bearer", "connstring", "accountkey", "sassig", "password", "pwd")}
    connection_string = "postgresql://postgres.%s@127.0.0.1:%d/postgres" % (cores["connstring"], closed)
    leaked_text = ("X-Signature: {xsignature} Authorization: Bearer {bearer} {cs} "
                   "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={accountkey};EndpointSuffix=x "
                   "SharedAccessSignature=sv=2022&sig={sassig} Server=db;Password={password};UID=sa pwd={pwd}"
                   ).format(cs=connection_string, **cores)
    notify = {"webhooks": [{
        "type": "json", "url": "http://127.0.0.1:%d/hook" % closed, "events": ["failure"],
        "headers": {"X-Signature": cores["xsignature"], "Authorization": "Bearer " + cores["bearer"]}}]}
    jobs = [
        # A job whose error text repeats what other tasks were given (its database name is the easy way).
        {"name": "pg-leaky", "source": {"engine": "postgresql", "host": "127.0.0.1", "port": closed,
                                        "database": leaked_text, "connect_timeout": 2}, "storage": "{{ storage }}"},
        {"name": "supabase-down", "source": {"engine": "supabase", "supabase": {
            "connection_string": connection_string}}, "storage": "{{ storage }}"},
    ]
    inventory, playbook = write_run(tmp_path, jobs, play_vars={"songmetrix_backup_notify": notify})
    proc = run(tmp_path, inventory, playbook, smtp_host="127.0.0.1", smtp_port=controller.port,
               to="ops@example.com", timeout=10)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    (envelope,) = box.envelopes
    (message,) = box.messages()
    assert message["Subject"] == "[backup] FAILED 4/4 jobs"
    raw = (envelope.original_content or envelope.content).decode("utf-8", "replace")
    texts = list(parts(message).values()) + [raw]
    for text in texts:
        assert [name for name, core in cores.items() if core in text] == [], text
    plain = parts(message)["text/plain"]
    assert "cannot connect to PostgreSQL at 127.0.0.1:%d/X-Signature: ********" % closed in plain, plain
    for shown in ("AccountKey=********;EndpointSuffix=x", "SharedAccessSignature=********&sig=********",
                  "Server=db;Password=********;UID=sa", "pwd=********"):
        assert shown in plain, plain


def test_send_on_failure_with_all_ok_sends_nothing(smtp, tmp_path):
    controller, box = smtp
    inventory, playbook = write_run(tmp_path, [files_job("files-ok", tmp_path / "data" / "files")])
    proc = run(tmp_path, inventory, playbook, smtp_host="127.0.0.1", smtp_port=controller.port,
               to="ops@example.com", send_on="failure")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert box.envelopes == []
    assert len(manifests(tmp_path, "db-a", "files-ok")) == 1


def test_smtp_down_is_a_warning(tmp_path):
    closed = free_port()  # nothing listens there
    jobs = [files_job("files-ok", tmp_path / "data" / "files"), files_job("files-missing", tmp_path / "nowhere")]
    inventory, playbook = write_run(tmp_path, jobs, fail_on_error=True)
    proc = run(tmp_path, inventory, playbook, smtp_host="127.0.0.1", smtp_port=closed, to="ops@example.com",
               timeout=5)
    output = proc.stdout + proc.stderr
    # The run's own result (a job failed: rc 2), not a crash of the callback.
    assert proc.returncode == 2, output
    assert "1 of 2 backup job(s) failed on db-a" in output
    assert "songmetrix.backup.email_report: no mail sent to 127.0.0.1:%d" % closed in output
    assert "Traceback" not in output

    proc = run(tmp_path, inventory, playbook, smtp_host="127.0.0.1", smtp_port=closed, to="ops@example.com",
               timeout=5, send_on="sometimes")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "songmetrix.backup.email_report: invalid option" in proc.stdout + proc.stderr


def test_login_and_refused_login(tmp_path):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"reporter" and auth_data.password == SECRET.encode()
        return AuthResult(success=ok, handled=False)

    certs = make_certificates(tmp_path, "smtp")
    with smtp_server(authenticator, tls="starttls", certs=certs) as (controller, box):
        inventory, playbook = write_run(tmp_path, [files_job("files-ok", tmp_path / "data" / "files")])
        tls = dict(smtp_host="127.0.0.1", smtp_port=controller.port, starttls="true", ca_file=certs.ca)
        proc = run(tmp_path, inventory, playbook, to="ops@example.com", user="reporter", password=SECRET, **tls)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (message,) = box.messages()
        assert message["Subject"] == "[backup] CHANGED 2/2 jobs"
        assert SECRET.encode() not in box.envelopes[0].content

        proc = run(tmp_path, inventory, playbook, to="ops@example.com", user="reporter", password="wrong-password",
                   timeout=10, **tls)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "refused the login of reporter" in proc.stdout + proc.stderr
        assert len(box.envelopes) == 1
