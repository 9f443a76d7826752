"""A real SMTP server for the tests: aiosmtpd's Controller on 127.0.0.1:<free port>.

    with smtp_server() as (controller, box):            # plain, accepts every message
    with smtp_server(authenticator=check) as (c, box):  # AUTH PLAIN required (no TLS on loopback)
    with smtp_server(check, tls="starttls", certs=certs) as (c, box):   # STARTTLS required before AUTH and MAIL
    with smtp_server(check, tls="implicit", certs=certs) as (c, box):   # SMTPS: TLS from the first byte
        ... controller.port ...; box.messages(); box.sessions (one entry per connection: TLS or not, logins)

certs: tests.tls_certs.make_certificates(tmp_path); clients trust certs.ca.
"""

from __future__ import annotations

import contextlib
import email
import email.policy

from aiosmtpd.controller import Controller

from tests.servers import LOCALHOST, free_port


def over_tls(server, session):
    """Whether an aiosmtpd connection is TLS: upgraded with STARTTLS (session.ssl) or TLS from the start."""
    return session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None


class Mailbox:
    """aiosmtpd handler: keeps every message it is given, and what each connection did."""

    def __init__(self):
        self.envelopes = []
        self.sessions = []  # per MAIL FROM: {"tls": over TLS, "authenticated": after a login}

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # aiosmtpd's hook name
        self.sessions.append({"tls": over_tls(server, session), "authenticated": bool(session.authenticated)})
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook name
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self):
        return [email.message_from_bytes(env.content, policy=email.policy.default) for env in self.envelopes]


@contextlib.contextmanager
def smtp_server(authenticator=None, tls=None, certs=None):
    """(controller, Mailbox) of a running server; with ``authenticator`` every client must log in.

    tls: None (plain), "starttls" (the server requires STARTTLS before anything else and AUTH only over TLS) or
    "implicit" (SMTPS); both need ``certs`` (tests.tls_certs.Certificates). A plain or SMTPS server with an
    authenticator makes aiosmtpd warn "Requiring AUTH while not requiring TLS": filter it in the test.
    """
    box = Mailbox()
    kwargs = {}
    if authenticator:
        # auth_require_tls: aiosmtpd only knows STARTTLS's TLS; an SMTPS connection is TLS from the first byte.
        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=tls == "starttls",
                      auth_exclude_mechanism=["LOGIN"])
    if tls == "starttls":
        kwargs.update(tls_context=certs.server_context(), require_starttls=True)
    elif tls == "implicit":
        kwargs.update(ssl_context=certs.server_context())
    elif tls is not None:
        raise ValueError("tls must be None, 'starttls' or 'implicit', not %r" % tls)
    controller = Controller(box, hostname=LOCALHOST, port=free_port(), **kwargs)
    controller.start()
    try:
        yield controller, box
    finally:
        controller.stop()
