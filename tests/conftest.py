"""Shared fixtures for the repository-level tests (tests/integration, tests/playbook, ...).

Servers start lazily, once per session, only when a test asks for them:

    def test_x(pg_server, run_module, storage_dir): ...

If the server software is missing the fixture errors with a hint (`make deps` installs it);
set SONGMETRIX_SKIP_MISSING_SERVERS=1 to skip those tests instead (never in CI).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.modrun import REPO_ROOT, run_module as _run_module
from tests.servers import MariaDBServer, PostgresServer, started_server

# Storage servers (moto S3, sshd) live in their own fixture modules.
pytest_plugins = ["tests.fixtures_s3", "tests.fixtures_sftp"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server (Debian's, newest installed major) on 127.0.0.1:<free port>.

    API: host, port, user, password, bin_dir, version, psql(sql, dbname=...), create_database,
    drop_database, stop(), start(), conn_params(), tool("pg_dump"), client_env().
    Tests that stop() it must start() it again before they end.
    """
    server = started_server(PostgresServer)
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def mariadb_server():
    """A MariaDB server on 127.0.0.1:<free port>, socket in its temp dir.

    API: host, port, socket, user, password, version, sql(sql, database=None), create_database,
    drop_database, stop(), start(), conn_params().
    """
    server = started_server(MariaDBServer)
    yield server
    server.cleanup()


def _unique_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


@pytest.fixture
def pg_database(pg_server):
    """A fresh, empty database on pg_server (dropped afterwards); the value is its name."""
    name = pg_server.create_database(_unique_name("t"))
    yield name
    if pg_server.running:
        pg_server.drop_database(name)


@pytest.fixture
def mariadb_database(mariadb_server):
    """A fresh, empty database on mariadb_server (dropped afterwards); the value is its name."""
    name = mariadb_server.create_database(_unique_name("t"))
    yield name
    if mariadb_server.running:
        mariadb_server.drop_database(name)


@pytest.fixture
def run_module():
    """run_module(name, args, check_mode=False, env=None, timeout=600) -> ModuleResult."""
    return _run_module


@pytest.fixture
def storage_dir(tmp_path) -> Path:
    """A fresh, empty local storage root for one test."""
    path = tmp_path / "storage"
    path.mkdir()
    return path


@pytest.fixture
def spool_dir(tmp_path) -> Path:
    """A fresh, empty spool directory for one test."""
    path = tmp_path / "spool"
    path.mkdir()
    return path
