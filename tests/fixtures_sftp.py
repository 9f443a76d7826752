"""Fixtures for SFTP storage tests: a real OpenSSH sshd on 127.0.0.1 (see tests/sshd.py).

    def test_x(sftp_server, sftp_storage_params, run_module): ...
"""

from __future__ import annotations


import pytest

from tests.servers import ServerUnavailable, missing_server
from tests.sshd import SshServer


@pytest.fixture(scope="session")
def sftp_server():
    """An SFTP-only sshd on 127.0.0.1:<free port>, for the whole session.

    API (tests/sshd.py SshServer): host, port, user, password (None when this machine cannot
    make a password user: not root), private_key, encrypted_key + encrypted_key_passphrase,
    known_hosts (holds host_key_line), host_public_key, other_host_public_key, root (a local
    directory the login user owns; storage paths go below it), home (login directory),
    fresh_dir(), storage_params(path, **overrides), sftp_cli(commands), download(remote, local),
    sessions(), wait_for_session(), drop_sessions(), stop(), start().
    Tests that stop() it must start() it again before they end.
    """
    try:
        server = SshServer()
    except ServerUnavailable as exc:
        missing_server(exc)
    with server:
        yield server
    # a test that stopped the server and failed before start() leaves nothing running either


@pytest.fixture
def sftp_storage_params(sftp_server):
    """A ``storage`` dict for the modules: type sftp, key login, strict host key checking.

    Keys: type, host, port, user, private_key, known_hosts, path. ``path`` is an absolute
    directory that does not exist yet (the storage creates it); it is on this machine too, so
    ``Path(params["path"])`` shows what was stored. Add prefix, password, ... as a test needs.
    """
    if not sftp_server.running:
        sftp_server.start()
    return sftp_server.storage_params(sftp_server.fresh_dir())
