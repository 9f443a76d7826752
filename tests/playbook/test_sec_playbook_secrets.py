"""Secrets end to end: one `ansible-playbook playbooks/backup.yml -vvv` run whose jobs together use every
secret the collection handles, and a search for each of them everywhere the run leaves a trace.

The run (one host, local connection, the backup_run role with `backup_run_no_log: false`, so that every
module result is printed at -vvv instead of being censored by Ansible):

- sec-pg-s3       PostgreSQL (a login role of the test's own, password) -> S3 (credentials of the test's own,
                  secret key), gpg encryption with a passphrase, verify after the backup
- sec-maria-sftp  MariaDB (a user of the test's own, password) -> SFTP with a password, age encryption with
                  a passphrase, verify after the backup
- sec-supa-fail   Supabase engine with a connection string holding a password, a database that does not
                  exist -> SFTP with an encrypted key and its passphrase: fails, the error comes from psql
- sec-maria-fail  MariaDB with a password and a database that does not exist -> S3: fails, the error comes
                  from the mariadb client
- reporting       a JSON webhook whose URL path holds a token, a Slack webhook with a bearer token in its
                  Authorization header, a Discord webhook that is gone (its 404 page repeats the request line,
                  token and all), a healthchecks ping URL holding a token, the JSON event log, the metrics
                  textfile dir, and the email_report callback logging in to the SMTP server with a password
                  (over STARTTLS, trusting the test CA)

Every secret is a distinctive random value; the search looks for its random core, so a secret that reached
a text JSON-escaped, percent-encoded or cut at a special character is still found. While the run goes,
every process's argv is sampled (tests/cmdline_watch.py) and the run's temporary directories (TMPDIR,
Ansible's local and remote temp) are walked every few milliseconds, reading each file that appears.
"""

from __future__ import annotations

import datetime
import html
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from aiosmtpd.smtp import AuthResult

from tests.cmdline_watch import CmdlineWatch, Sampler
from tests.history import make_history
from tests.integration.http_receiver import HttpReceiver
from tests.smtp_server import smtp_server
from tests.tls_certs import make_certificates
from tests.modrun import ansible_playbook

REPO = Path(__file__).resolve().parents[2]
CALLBACK = "songmetrix.backup.email_report"

pytestmark = pytest.mark.slow


def core(tag):
    """A distinctive random value: what the search looks for."""
    return "%s%s" % (tag, uuid.uuid4().hex[:20])


class TreeWatch(Sampler):
    """Walks some directories every few ms while a run goes: every file and folder seen, its mode, and
    which secrets (by their core) a file held when it was read."""

    interval = 0.005

    def __init__(self, roots, secrets):
        Sampler.__init__(self)
        self.roots = [str(r) for r in roots]
        self.secrets = {name: value.encode() for name, value in secrets.items()}
        self.seen = {}  # path -> {"mode": int, "dir": bool, "secrets": set of names}

    def _look(self, path, is_dir):
        try:
            st = os.lstat(path)
        except OSError:
            return
        entry = self.seen.setdefault(path, {"mode": stat.S_IMODE(st.st_mode), "dir": is_dir, "secrets": set()})
        entry["mode"] = stat.S_IMODE(st.st_mode)
        if is_dir or not stat.S_ISREG(st.st_mode) or st.st_size > 20 * 1024 * 1024:
            return
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            return
        entry["secrets"].update(name for name, value in self.secrets.items() if value in data)

    def sample(self):
        for root in self.roots:
            for folder, dirs, files in os.walk(root):
                for name in dirs:
                    self._look(os.path.join(folder, name), True)
                for name in files:
                    self._look(os.path.join(folder, name), False)


def leaks(secrets, text, allowed=()):
    """Names of the secrets (by core) found in ``text``, except those in ``allowed``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return sorted(name for name, value in secrets.items() if name not in allowed and value in text)


@pytest.fixture
def smtp_with_login(tmp_path):
    """An SMTP server that wants STARTTLS before the login (the callback trusts its CA: ca_file)."""
    password = core("SmtpPw") + " 'q\"%"
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append(auth_data.password == password.encode() and session.ssl is not None)
        return AuthResult(success=auth_data.login == b"reporter" and auth_data.password == password.encode(),
                          handled=False)

    certs = make_certificates(tmp_path, "smtp")
    with smtp_server(authenticator, tls="starttls", certs=certs) as (controller, box):
        yield controller, box, password, logins, certs.ca


def stored_files(root):
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


def test_no_secret_in_argv_output_mail_webhooks_metrics_event_log_manifests_or_temp_files(
        request, tmp_path, pg_server, pg_database, mariadb_server, mariadb_database, s3_server, s3_bucket,
        sftp_server, smtp_with_login):
    controller, box, smtp_password, logins, smtp_ca = smtp_with_login
    assert sftp_server.password, "the SFTP test server has no password user (needs root)"

    # -- the secrets: distinctive random cores, with characters that need quoting around them
    pg_core, maria_core = core("PgPw"), core("MariaPw")
    pg_password = pg_core + "'\":\\#"
    maria_password = maria_core + "'\"#\\;"
    gpg_pass, age_pass = core("GpgPass") + " 'x' $(y)", core("AgePass") + " \"z\""
    key_pass = core("KeyPass") + " 'k'"
    url_token, header_token, ping_token = core("UrlTok"), core("HdrTok"), core("PingTok")
    gone_token = core("GoneTok")
    s3_access, s3_secret = s3_server.create_credentials(["s3:*"])
    secrets = {
        "postgresql password": pg_core,
        "mariadb password": maria_core,
        "s3 secret key": s3_secret,
        "sftp password": sftp_server.password[:16],  # token_urlsafe(12): the random part of the password
        "sftp key passphrase": key_pass.split(" ")[0],
        "gpg passphrase": gpg_pass.split(" ")[0],
        "age passphrase": age_pass.split(" ")[0],
        "webhook url token": url_token,
        "webhook header token": header_token,
        "healthchecks url token": ping_token,
        "refused webhook url token": gone_token,
        "smtp password": smtp_password.split(" ")[0],
    }
    assert len(set(secrets.values())) == len(secrets) and all(len(v) >= 16 for v in secrets.values())

    # -- sources: a login role and a user of the test's own, with the passwords above
    pg_role, maria_user = "sm_sec_" + uuid.uuid4().hex[:8], "sm_sec_" + uuid.uuid4().hex[:8]

    def drop_logins():  # runs before the fixtures drop the databases
        pg_server.psql("DROP OWNED BY %s" % pg_role, dbname=pg_database)
        pg_server.psql("DROP ROLE %s" % pg_role)
        mariadb_server.sql("DROP USER IF EXISTS '%s'@'127.0.0.1'" % maria_user)

    pg_server.psql("CREATE ROLE %s LOGIN PASSWORD '%s'; GRANT CONNECT ON DATABASE %s TO %s;"
                   % (pg_role, pg_password.replace("'", "''"), pg_database, pg_role))
    request.addfinalizer(drop_logins)
    pg_server.psql("CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 5000) g; "
                   "GRANT SELECT ON t TO %s;" % pg_role, dbname=pg_database)
    mariadb_server.sql("CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY %s; GRANT ALL PRIVILEGES ON *.* TO '%s'@'127.0.0.1';"
                       % (maria_user, mariadb_server.sql_literal(maria_password), maria_user))
    mariadb_server.sql("CREATE TABLE t (g INT, h VARCHAR(40)); INSERT INTO t SELECT seq, md5(seq) FROM seq_1_to_5000",
                       database=mariadb_database)

    # -- storages: the SFTP user's encrypted key, copied and given a passphrase of our own
    key = tmp_path / "sftp_key"
    shutil.copyfile(sftp_server.encrypted_key, key)
    key.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-f", str(key), "-P", sftp_server.encrypted_key_passphrase,
                    "-N", key_pass], check=True, capture_output=True)
    s3 = dict(type="s3", bucket=s3_bucket, endpoint_url=s3_server.endpoint_url, region=s3_server.region,
              access_key=s3_access, secret_key=s3_secret, prefix="sec")
    sftp_password = dict(type="sftp", host=sftp_server.host, port=sftp_server.port, user=sftp_server.user,
                         password=sftp_server.password, known_hosts=sftp_server.known_hosts,
                         path=sftp_server.fresh_dir(), prefix="sec")
    sftp_key = dict(sftp_password, password=None, private_key=str(key), private_key_passphrase=key_pass,
                    path=sftp_server.fresh_dir())
    del sftp_key["password"]

    pg = dict(engine="postgresql", host=pg_server.host, port=pg_server.port, user=pg_role, password=pg_password,
              database=pg_database)
    maria = dict(engine="mariadb", host=mariadb_server.host, port=mariadb_server.port, user=maria_user,
                 password=maria_password, database=mariadb_database)
    gone = "gone_" + uuid.uuid4().hex[:6]
    uri = "postgresql://%s:%s@%s:%d/%s?sslmode=disable" % (pg_role, quote(pg_password, safe=""), pg_server.host,
                                                           pg_server.port, gone)
    # The failing jobs have a backup already: their failures are then recorded in storage (last-attempt.json).
    yesterday = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    make_history(sftp_key, "sec", "sec-supa-fail", [yesterday])
    make_history(s3, "sec", "sec-maria-fail", [yesterday])
    jobs = [
        dict(name="sec-pg-s3", source=pg, storage=s3, encryption=dict(method="gpg", passphrase=gpg_pass),
             verify=True),
        dict(name="sec-maria-sftp", source=maria, storage=sftp_password,
             encryption=dict(method="age", passphrase=age_pass), verify=True),
        dict(name="sec-supa-fail", source=dict(engine="supabase", supabase=dict(connection_string=uri)),
             storage=sftp_key),
        dict(name="sec-maria-fail", source=dict(maria, database=gone), storage=s3),
    ]

    metrics_dir = tmp_path / "textfile"
    metrics_dir.mkdir()
    event_log = tmp_path / "log" / "events.jsonl"
    temp_roots = {name: tmp_path / name for name in ("tmpdir", "local-tmp", "remote-tmp")}
    for path in temp_roots.values():
        path.mkdir(mode=0o700)

    with HttpReceiver() as rx:
        # A webhook that is gone: its 404 page repeats the request line, token and all.
        rx.behave("/gone/", ["404 Cannot {method} {path}"])
        host_vars = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "backup_run_no_log": False,
            "songmetrix_backup_jobs": jobs,
            "songmetrix_backup_metrics_dir": str(metrics_dir),
            "songmetrix_backup_event_log": str(event_log),
            "songmetrix_backup_notify": {
                "webhooks": [
                    {"type": "json", "url": rx.url("/hook/" + url_token), "events": ["start", "success", "failure"]},
                    {"type": "slack", "url": rx.url("/slack"), "events": ["success", "failure"],
                     "headers": {"Authorization": "Bearer " + header_token}},
                    {"type": "discord", "url": rx.url("/gone/" + gone_token), "events": ["failure"]},
                ],
                "healthchecks": {"url": rx.url("/ping/" + ping_token)},
            },
        }
        inventory = tmp_path / "inventory.json"
        inventory.write_text(json.dumps({"all": {"hosts": {"backup-host": host_vars}}}))
        inventory.chmod(0o600)

        env = dict(os.environ)
        for name in list(env):
            if name.startswith("SONGMETRIX_BACKUP_EMAIL_"):
                del env[name]
        env.pop("ANSIBLE_FORCE_COLOR", None)
        env.update(
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_HOME=str(tmp_path / "ansible-home"),
            ANSIBLE_LOCAL_TEMP=str(temp_roots["local-tmp"]),
            ANSIBLE_REMOTE_TEMP=str(temp_roots["remote-tmp"]),
            TMPDIR=str(temp_roots["tmpdir"]),
            ANSIBLE_CALLBACKS_ENABLED=CALLBACK,
            SONGMETRIX_BACKUP_EMAIL_SMTP_HOST="127.0.0.1",
            SONGMETRIX_BACKUP_EMAIL_SMTP_PORT=str(controller.port),
            SONGMETRIX_BACKUP_EMAIL_STARTTLS="true",
            SONGMETRIX_BACKUP_EMAIL_CA_FILE=smtp_ca,
            SONGMETRIX_BACKUP_EMAIL_USER="reporter",
            SONGMETRIX_BACKUP_EMAIL_PASSWORD=smtp_password,
            SONGMETRIX_BACKUP_EMAIL_TO="ops@example.com",
            SONGMETRIX_BACKUP_EMAIL_FROM="backup@example.com",
            PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
        )
        argv = [ansible_playbook(), "-i", str(inventory), "playbooks/backup.yml", "-vvv"]
        with CmdlineWatch(*secrets.values()) as argv_watch, TreeWatch(temp_roots.values(), secrets) as files:
            proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        requests = list(rx.requests)
    output = proc.stdout + proc.stderr

    # The run did what it should: two backups stored and verified, two failures named by the tools.
    assert proc.returncode == 2, output[-5000:]
    assert "sec-pg-s3: ok" in proc.stdout and "sec-maria-sftp: ok" in proc.stdout, proc.stdout[-5000:]
    assert "Verify the stored backup of sec-pg-s3" in proc.stdout
    assert "sec-supa-fail: FAILED" in proc.stdout and "sec-maria-fail: FAILED" in proc.stdout
    assert 'database "%s" does not exist' % gone in proc.stdout, proc.stdout[-5000:]
    assert "Unknown database '%s'" % gone in proc.stdout, proc.stdout[-5000:]
    assert "2 of 4 backup job(s) failed on backup-host" in proc.stdout

    # 1. argv of every process, sampled every 10 ms
    assert argv_watch.samples > 50
    assert argv_watch.seen == [], [a.replace(b"\0", b" ")[:300] for a in argv_watch.seen]

    # 2. Ansible's output at -vvv (no_log off in the role)
    assert leaks(secrets, output) == [], [line for line in output.splitlines()
                                          if leaks(secrets, line)][:5]

    # 3. the email (the callback logged in with the SMTP password, over STARTTLS)
    assert logins and all(logins), logins
    assert len(box.envelopes) == 1, output[-3000:]
    (message,) = box.messages()
    assert message["Subject"] == "[backup] FAILED 2/4 jobs"
    texts = [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
    assert len(texts) == 2 and all('database "%s" does not exist' % gone in html.unescape(t) for t in texts)
    # One row per job: the verify steps belong to their jobs, a failure's message is shown once.
    plain = message.get_body(("plain",)).get_content()
    assert "verify:" not in plain and plain.count("Unknown database '%s'" % gone) == 1, plain
    raw = box.envelopes[0].original_content or box.envelopes[0].content
    assert leaks(secrets, raw) == []
    for text in texts:
        assert leaks(secrets, text) == []

    # 4. webhook and ping requests: each token only where it is meant to go
    hooks, slack, pings, gone_hooks = rx.on("/hook/"), rx.on("/slack"), rx.on("/ping/"), rx.on("/gone/")
    assert len(hooks) + len(slack) + len(pings) + len(gone_hooks) == len(requests)
    # Both failures were reported (Ansible shows the same warning once), the 404 page's text without the token.
    assert len(gone_hooks) == 2 and "HTTP 404 Not Found: Cannot POST …); the job's result is unchanged" in output
    assert [json.loads(r.body)["event"] for r in hooks] == ["start", "success"] * 2 + ["start", "failure"] * 2
    assert len(slack) == 4 and len(pings) == 8
    assert all(r.path == "/hook/" + url_token for r in hooks)
    assert all(r.headers.get("Authorization") == "Bearer " + header_token for r in slack)
    failure = [json.loads(r.body) for r in hooks if json.loads(r.body)["event"] == "failure"]
    assert {f["job"] for f in failure} == {"sec-supa-fail", "sec-maria-fail"}
    for request in requests:
        allowed_in_path = {"webhook url token"} if request in hooks else (
            {"healthchecks url token"} if request in pings else (
                {"refused webhook url token"} if request in gone_hooks else set()))
        headers = dict(request.headers)
        if request in slack:
            del headers["Authorization"]
        assert leaks(secrets, request.path, allowed_in_path) == [], request.path
        assert leaks(secrets, json.dumps(headers)) == [], headers
        assert leaks(secrets, request.body) == [], request.body[:500]

    # 5. metrics textfiles and the event log
    proms = sorted(metrics_dir.iterdir())
    assert [p.name for p in proms] == ["songmetrix_backup_%s.prom" % j["name"] for j in sorted(
        jobs, key=lambda j: j["name"])]
    for prom in proms:
        assert leaks(secrets, prom.read_bytes()) == [], prom
    lines = event_log.read_text().splitlines()
    assert len(lines) == 8 and sum('"event":"failure"' in line for line in lines) == 2
    assert leaks(secrets, event_log.read_bytes()) == []

    # 6. everything stored: manifests, artifacts, last-attempt records (S3 and both SFTP folders)
    s3_keys = s3_server.keys(s3_bucket, "sec/")
    assert any(k.startswith("sec/sec-pg-s3/") and k.endswith(".manifest.json") for k in s3_keys), s3_keys
    client = s3_server.client()
    attempt = json.loads(client.get_object(Bucket=s3_bucket, Key="sec/sec-maria-fail/last-attempt.json")["Body"].read())
    assert attempt["status"] == "failed" and "Unknown database" in attempt["error"], attempt
    for key_name in s3_keys:
        body = client.get_object(Bucket=s3_bucket, Key=key_name)["Body"].read()
        assert leaks(secrets, body) == [], key_name
    sftp_stored = stored_files(sftp_password["path"]) + stored_files(sftp_key["path"])
    assert any(p.name.endswith(".manifest.json") and "sec-maria-sftp" in p.name for p in sftp_stored), sftp_stored
    attempt = json.loads((Path(sftp_key["path"]) / "sec" / "sec-supa-fail" / "last-attempt.json").read_text())
    assert attempt["status"] == "failed" and "does not exist" in attempt["error"], attempt
    for path in sftp_stored:
        assert leaks(secrets, path.read_bytes()) == [], path

    # 7. temporary files: what held a secret was closed to other users, and nothing is left
    assert files.samples > 50
    gpg_homes = [p for p, e in files.seen.items() if e["dir"] and os.path.basename(p).startswith("sm-gpg-")]
    assert gpg_homes and all(files.seen[p]["mode"] == 0o700 for p in gpg_homes), gpg_homes  # gpg's throw-away home
    holding = {path: entry for path, entry in files.seen.items() if entry["secrets"]}
    # Module arguments reach each module on stdin (ansible.cfg: pipelining for every connection, local
    # included), so no AnsiballZ_<module>.py file on disk holds them.
    assert not any(re.search(r"AnsiballZ_\w+\.py$", p) for p in holding), sorted(holding)
    # Anything else holding a secret (an option file, a key written by the collection) must be 0600.
    for path in sorted(holding):
        assert holding[path]["mode"] == 0o600, (path, oct(holding[path]["mode"]), sorted(holding[path]["secrets"]))
    left = [str(p) for root in temp_roots.values() for p in root.rglob("*")]
    assert left == [], left
