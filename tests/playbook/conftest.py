"""Fixtures of the playbook tests."""

import pytest

from tests.smtp_server import smtp_server


@pytest.fixture
def smtp():
    """(controller, Mailbox) of an SMTP server on 127.0.0.1 that accepts every message."""
    with smtp_server() as running:
        yield running
