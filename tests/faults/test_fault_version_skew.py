"""Source faults: the server and the dump tool of different PostgreSQL majors, both real.

Debian 12 has PostgreSQL 15 only; a PostgreSQL 16 build (server and client tools, from PyPI's
pgserver wheel, fetched by scripts/fetch-postgresql-other.sh in `make deps`) gives the other side:

- server 16, pg_dump 15 (client older than the server): pg_dump cannot dump a newer server, so the
  run fails at preflight naming both versions and the client package to install; nothing stored,
  the failure recorded, prune stopped. With a pg_dump of its own major (source.executable) it backs
  up, row counts included (this build has no libxml: the counts must not need it).
- server 15, pg_dump 16 (server older than the client): a normal backup, the manifest records both
  versions; pg_restore 15 cannot read what pg_dump 16 wrote, so a deep verify and a restore with it
  say so (not "damaged"), and with pg_restore 16 both succeed.
"""

from __future__ import annotations

import os
import uuid

import pytest

from fault_helpers import assert_failed_run_left_no_backup, seed_history
from tests.servers import (
    OTHER_PG_VERSION,
    PostgresServer,
    ServerUnavailable,
    missing_server,
    other_pg_bin_dir,
    started_server,
)

OTHER_MAJOR = OTHER_PG_VERSION.split(".")[0]


@pytest.fixture(scope="module")
def pg_newer():
    """A PostgreSQL 16 server of this module's own, with a small database."""
    try:
        bin_dir = other_pg_bin_dir()
    except ServerUnavailable as exc:  # the same rules as any missing server (never skipped in CI)
        missing_server(exc)
    server = started_server(lambda: PostgresServer(bin_dir=bin_dir))
    server.database = "skew_" + uuid.uuid4().hex[:6]
    server.create_database(server.database)
    server.psql("CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 5000) g;"
                'CREATE TABLE "we\'ird ""name"" ü" AS SELECT g FROM generate_series(1, 7) g',
                dbname=server.database)
    yield server
    server.cleanup()


@pytest.fixture
def skew_db(pg_server):
    """A database on the session's (Debian, 15) server."""
    name = "skew_" + uuid.uuid4().hex[:6]
    pg_server.create_database(name)
    pg_server.psql("CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 5000) g", dbname=name)
    yield name
    pg_server.drop_database(name)


def pg_source(server, database, **extra):
    return dict(engine="postgresql", host=server.host, port=server.port, user=server.user,
                password=server.password, database=database, **extra)


def test_server_newer_than_pg_dump_fails_at_preflight_naming_both(run_module, tmp_path, pg_newer, pg_server):
    storage = dict(type="local", path=str(tmp_path / "store"))
    history = seed_history(storage, "skew")
    res = run_module("dump", dict(job="skew", source=pg_source(pg_newer, pg_newer.database), storage=storage))
    assert res.failed, res.describe()
    assert "pg_dump %s is older than the PostgreSQL server %s" % (pg_server.version, pg_newer.version) in res.msg, \
        res.msg
    assert "install postgresql-client-%s" % OTHER_MAJOR in res.msg
    assert pg_newer.password not in res.stdout + res.stderr
    assert_failed_run_left_no_backup(run_module, storage, "skew", history, ["older than the PostgreSQL server"])


def test_server_newer_than_pg_dump_backs_up_with_a_matching_executable(run_module, tmp_path, pg_newer):
    storage = dict(type="local", path=str(tmp_path / "store"))
    source = pg_source(pg_newer, pg_newer.database, executable=pg_newer.tool("pg_dump"))
    res = run_module("dump", dict(job="skew", source=source, storage=storage))
    assert res.rc == 0, res.describe()
    manifest = res.result["manifest"]
    assert manifest["server_version"].startswith(OTHER_PG_VERSION) and OTHER_PG_VERSION in manifest["tool_version"]
    # Row counts in the dump's snapshot, on a server built without libxml (no query_to_xml).
    assert manifest["table_counts"] == {"public.t": 5000, 'public.we\'ird "name" ü': 7}


def test_server_older_than_pg_dump_backs_up_and_restores_with_a_new_enough_pg_restore(
        run_module, tmp_path, pg_server, skew_db, pg_newer):
    storage = dict(type="local", path=str(tmp_path / "store"))
    pg_dump_16 = pg_newer.tool("pg_dump")
    res = run_module("dump", dict(job="skew", source=pg_source(pg_server, skew_db, executable=pg_dump_16),
                                  storage=storage))
    assert res.rc == 0, res.describe()
    manifest = res.result["manifest"]
    assert manifest["server_version"].startswith(pg_server.version)
    assert "pg_dump (PostgreSQL) %s" % OTHER_PG_VERSION in manifest["tool_version"], manifest["tool_version"]
    key = res.result["manifest_key"]

    # Debian's pg_restore 15 cannot read an archive of pg_dump 16: said plainly, not called damage.
    shallow = run_module("verify", dict(job="skew", storage=storage))
    assert shallow.rc == 0 and shallow.result["backups"][0]["ok"], shallow.describe()
    deep = run_module("verify", dict(job="skew", storage=storage, deep=True))
    assert deep.failed, deep.describe()
    problem = deep.result["backups"][0]["problem"]
    assert "written by pg_dump %s" % OTHER_PG_VERSION in problem and "postgresql-client-%s" % OTHER_MAJOR in problem, \
        problem
    target_db = "skew_restored_" + uuid.uuid4().hex[:6]
    target = pg_source(pg_server, target_db)
    refused = run_module("restore", dict(manifest_key=key, storage=storage, target=target, create_database=True))
    assert refused.failed and "written by pg_dump %s" % OTHER_PG_VERSION in refused.msg, refused.describe()
    assert pg_server.psql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % target_db) == "0"

    # With the client of the dump's major both work, and the rows come back.
    pg_restore_16 = pg_newer.tool("pg_restore")
    path_16 = os.path.dirname(pg_restore_16) + os.pathsep + os.environ["PATH"]
    deep = run_module("verify", dict(job="skew", storage=storage, deep=True), env=dict(PATH=path_16))
    assert deep.rc == 0 and deep.result["backups"][0]["ok"], deep.describe()
    restored = run_module("restore", dict(manifest_key=key, storage=storage, create_database=True,
                                          target=dict(target, executable=pg_restore_16)))
    assert restored.rc == 0, restored.describe()
    try:
        assert pg_server.psql("SELECT count(*), sum(g) FROM t", dbname=target_db) == "5000|12502500"
    finally:
        pg_server.drop_database(target_db)
