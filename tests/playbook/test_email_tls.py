"""The email_report callback's login goes over TLS only, verified against a real TLS SMTP server.

aiosmtpd on 127.0.0.1 with a certificate signed by a private CA made for the test (tests/tls_certs.py):
STARTTLS (the server requires it before AUTH and MAIL) and SMTPS (TLS from the first byte), the callback
trusting that CA through its ca_file option (env and ini). A login over a plain connection is refused before
anything is sent unless allow_plaintext_login is set, and an untrusted certificate stops the mail before the
password goes out.
"""

import pytest
from aiosmtpd.smtp import AuthResult

from tests.playbook.test_email_report import REPO, SECRET, files_job, run, write_run
from tests.smtp_server import over_tls, smtp_server
from tests.tls_certs import make_certificates

pytestmark = pytest.mark.slow

WARNING = "[WARNING]: songmetrix.backup.email_report"


class Logins:
    """aiosmtpd authenticator: accepts reporter/SECRET, records every attempt (over TLS or not)."""

    def __init__(self):
        self.attempts = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        self.attempts.append({"tls": over_tls(server, session), "password": auth_data.password.decode()})
        ok = auth_data.login == b"reporter" and auth_data.password == SECRET.encode()
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def certs(tmp_path):
    return make_certificates(tmp_path, "smtp")


@pytest.fixture
def one_job(tmp_path):
    return write_run(tmp_path, [files_job("files-ok", tmp_path / "data" / "files")])


def test_starttls_login_trusting_the_private_ca(tmp_path, certs, one_job):
    logins = Logins()
    with smtp_server(logins, tls="starttls", certs=certs) as (controller, box):
        proc = run(tmp_path, *one_job, smtp_host="127.0.0.1", smtp_port=controller.port, starttls="true",
                   ca_file=certs.ca, user="reporter", password=SECRET, to="ops@example.com")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert WARNING not in output, output
    assert logins.attempts == [{"tls": True, "password": SECRET}]
    assert box.sessions == [{"tls": True, "authenticated": True}]
    assert [m["Subject"] for m in box.messages()] == ["[backup] CHANGED 2/2 jobs"]


def ini_config(tmp_path, section):
    """An ansible.cfg: the repository's, with absolute paths, plus [callback_email_report] from ``section``."""
    text = (REPO / "ansible.cfg").read_text()
    for relative in ("./collections", "./roles"):
        text = text.replace("= " + relative, "= " + str(REPO / relative[2:]))
    text += "\n[callback_email_report]\n" + "".join("%s = %s\n" % item for item in section.items())
    path = tmp_path / "ansible.cfg"
    path.write_text(text)
    return path


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtps_login_with_ini_settings(tmp_path, certs, one_job):
    logins = Logins()
    with smtp_server(logins, tls="implicit", certs=certs) as (controller, box):
        config = ini_config(tmp_path, {"smtp_host": "127.0.0.1", "smtp_port": controller.port, "ssl": "true",
                                       "ca_file": certs.ca, "user": "reporter", "to": "ops@example.com"})
        proc = run(tmp_path, *one_job, password=SECRET, ansible_config=config)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert WARNING not in output, output
    assert logins.attempts == [{"tls": True, "password": SECRET}]
    assert len(box.messages()) == 1 and box.sessions == [{"tls": True, "authenticated": True}]


def test_an_untrusted_certificate_stops_the_mail_before_the_login(tmp_path, certs, one_job):
    logins = Logins()
    with smtp_server(logins, tls="starttls", certs=certs) as (controller, box):
        # No ca_file: the system's trust store does not know the test CA.
        proc = run(tmp_path, *one_job, smtp_host="127.0.0.1", smtp_port=controller.port, starttls="true",
                   user="reporter", password=SECRET, to="ops@example.com")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "no mail sent to 127.0.0.1:%d: SSLCertVerificationError" % controller.port in output, output
    assert "CERTIFICATE_VERIFY_FAILED" in output
    assert logins.attempts == [] and box.envelopes == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_login_over_a_plain_connection_is_refused(tmp_path, one_job):
    logins = Logins()
    with smtp_server(logins) as (controller, box):
        proc = run(tmp_path, *one_job, smtp_host="127.0.0.1", smtp_port=controller.port, user="reporter",
                   password=SECRET, to="ops@example.com")
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output  # a mail problem never fails the run
        assert logins.attempts == [] and box.envelopes == [] and box.sessions == []
        warning = " ".join(output.split())
        assert ("songmetrix.backup.email_report: no mail sent: refusing to send the login of reporter to "
                "127.0.0.1:%d over a connection without TLS: set starttls = true (port 587) or ssl = true "
                "(port 465) in [callback_email_report] (SONGMETRIX_BACKUP_EMAIL_STARTTLS=true or "
                "SONGMETRIX_BACKUP_EMAIL_SSL=true), or allow_plaintext_login = true "
                "(SONGMETRIX_BACKUP_EMAIL_ALLOW_PLAINTEXT_LOGIN=true)" % controller.port) in warning, output
        assert SECRET not in output

        # Asked for explicitly: the login goes out in the clear.
        proc = run(tmp_path, *one_job, smtp_host="127.0.0.1", smtp_port=controller.port, user="reporter",
                   password=SECRET, to="ops@example.com", allow_plaintext_login="true")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert logins.attempts == [{"tls": False, "password": SECRET}] and len(box.envelopes) == 1


def test_the_example_settings_use_tls():
    """Every [callback_email_report] example the project shows logs in over STARTTLS or SMTPS."""
    callback = REPO / "collections/ansible_collections/songmetrix/backup/plugins/callback/email_report.py"
    for path in (REPO / "ansible.cfg", REPO / "docs" / "reporting.md", callback):
        text = path.read_text()
        sections = text.split("[callback_email_report]")[1:]
        assert sections, path
        for section in sections:
            settings = section.split("\n\n")[0].replace("# ", "")
            if "user =" in settings:
                assert "starttls = true" in settings or "ssl = true" in settings, (path, settings)
