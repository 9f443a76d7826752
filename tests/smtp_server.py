"""A real SMTP server for the tests: aiosmtpd's Controller on 127.0.0.1:<free port>.

    with smtp_server() as (controller, box):            # accepts every message
    with smtp_server(authenticator=check) as (c, box):  # AUTH PLAIN required (no TLS on loopback)
        ... controller.port ...; box.messages()
"""

from __future__ import annotations

import contextlib
import email
import email.policy

from aiosmtpd.controller import Controller

from tests.servers import LOCALHOST, free_port


class Mailbox:
    """aiosmtpd handler: keeps every message it is given."""

    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook name
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self):
        return [email.message_from_bytes(env.content, policy=email.policy.default) for env in self.envelopes]


@contextlib.contextmanager
def smtp_server(authenticator=None):
    """(controller, Mailbox) of a running server; with ``authenticator`` every client must log in."""
    box = Mailbox()
    auth = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False,
                auth_exclude_mechanism=["LOGIN"]) if authenticator else {}
    controller = Controller(box, hostname=LOCALHOST, port=free_port(), **auth)
    controller.start()
    try:
        yield controller, box
    finally:
        controller.stop()
