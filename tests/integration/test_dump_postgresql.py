"""pg_dump source against a real PostgreSQL server: round trips with stock tools, failures, versions."""

import os
import signal
import subprocess
import tarfile
import time
import uuid

import pytest

from engine_helpers import (
    check_artifact_matches_manifest,
    cmdline,
    decompress_cmd,
    stored_files,
    start_module,
    wait_for_child,
)

SCHEMA = """
CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(12,2), tags text[], data bytea, seen timestamptz);
INSERT INTO items SELECT g, 'item ' || g || ' ünïcødé ' || repeat('x', g % 7), g * 1.25,
       ARRAY['a', 'b' || g], decode(md5(g::text), 'hex'), '2026-01-01'::timestamptz + g * interval '1 minute'
  FROM generate_series(1, 3000) g;
INSERT INTO items VALUES (0, NULL, NULL, NULL, NULL, NULL);
CREATE TABLE audit_log (id serial PRIMARY KEY, msg text);
INSERT INTO audit_log (msg) SELECT 'event ' || g FROM generate_series(1, 50) g;
CREATE SCHEMA reporting;
CREATE TABLE reporting.daily (day date PRIMARY KEY, total numeric);
INSERT INTO reporting.daily SELECT d::date, 42 FROM generate_series('2026-01-01'::date, '2026-02-01', '1 day') d;
CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 10;
"""

TABLES = ["items", "audit_log", "reporting.daily"]


def table_digest(pg, dbname, table):
    sql = "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM %s t" % table
    return pg.psql(sql, dbname=dbname).strip()


@pytest.fixture
def source_db(pg_server):
    name = "src_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    pg_server.psql(SCHEMA, dbname=name)
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def fresh_db(pg_server):
    name = "restored_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    yield name
    pg_server.drop_database(name)


def pg_source(pg, database, **extra):
    source = dict(engine="postgresql", host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                  database=database)
    source.update(extra)
    return source


def restore_env(pg):
    return dict(os.environ, PGHOST=pg.host, PGPORT=str(pg.port), PGUSER=pg.user, PGPASSWORD=pg.password)


def pipe_into(decompress, consumer, env):
    """decompress | consumer with both exit statuses checked (what a careful operator types)."""
    first = subprocess.Popen(decompress, stdout=subprocess.PIPE)
    second = subprocess.run(consumer, stdin=first.stdout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first.stdout.close()
    assert first.wait() == 0
    assert second.returncode == 0, second.stderr.decode()


@pytest.mark.parametrize("compression", ["zstd", "gzip", "lz4", "none"])
def test_custom_format_round_trip_with_pg_restore(pg_server, source_db, fresh_db, run_module, tmp_path, compression):
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="pg-custom", source=pg_source(pg_server, source_db),
                                  storage=dict(type="local", path=storage), compression=compression))
    assert res.rc == 0, res.result
    path, manifest = check_artifact_matches_manifest(storage, res.result)
    assert manifest["engine"] == "postgresql" and manifest["format"] == "custom"
    assert manifest["compression"]["algorithm"] == compression
    assert manifest["server_version"].startswith(pg_server.version.split(".")[0])
    assert manifest["raw_size"] > 0 and manifest["tool_version"].startswith("pg_dump")
    assert "--compress=0" in res.result["command"]
    assert pg_server.password not in res.stdout + res.stderr

    pipe_into(decompress_cmd(path), ["pg_restore", "--no-owner", "--exit-on-error", "-d", fresh_db],
              restore_env(pg_server))
    for table in TABLES:
        assert table_digest(pg_server, fresh_db, table) == table_digest(pg_server, source_db, table)
    assert pg_server.psql("SELECT count(*) FROM cheap", dbname=fresh_db).strip() == \
        pg_server.psql("SELECT count(*) FROM cheap", dbname=source_db).strip()


def test_plain_format_round_trip_with_psql(pg_server, source_db, fresh_db, run_module, tmp_path):
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="pg-plain", source=pg_source(pg_server, source_db, format="plain"),
                                  storage=dict(path=storage)))
    assert res.rc == 0, res.result
    path, manifest = check_artifact_matches_manifest(storage, res.result)
    assert path.endswith(".sql.zst")
    pipe_into(decompress_cmd(path), ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", fresh_db],
              restore_env(pg_server))
    for table in TABLES:
        assert table_digest(pg_server, fresh_db, table) == table_digest(pg_server, source_db, table)


def test_directory_format_parallel_round_trip(pg_server, source_db, fresh_db, run_module, tmp_path):
    storage = str(tmp_path / "store")
    spool = tmp_path / "spool"
    spool.mkdir()
    res = run_module("dump", dict(job="pg-dir", source=pg_source(pg_server, source_db, format="directory", jobs=2),
                                  storage=dict(path=storage), spool_dir=str(spool)))
    assert res.rc == 0, res.result
    path, manifest = check_artifact_matches_manifest(storage, res.result)
    assert "--jobs=2" in res.result["command"] and path.endswith(".tar.zst")
    assert os.listdir(str(spool)) == []  # the spooled directory is gone
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    tar_path = str(tmp_path / "dump.tar")
    with open(tar_path, "wb") as out:
        subprocess.run(decompress_cmd(path), check=True, stdout=out)
    subprocess.run(["tar", "-xf", tar_path, "-C", str(extracted)], check=True)
    assert "toc.dat" in os.listdir(str(extracted))
    subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "-j", "2", "-d", fresh_db, str(extracted)],
                   check=True, env=restore_env(pg_server))
    for table in TABLES:
        assert table_digest(pg_server, fresh_db, table) == table_digest(pg_server, source_db, table)


def test_include_and_exclude_tables_and_schemas(pg_server, source_db, run_module, tmp_path):
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="pg-filter", storage=dict(path=storage), compression="none",
                                  source=pg_source(pg_server, source_db, format="plain",
                                                   exclude=["audit_*"], exclude_schemas=["reporting"])))
    assert res.rc == 0, res.result
    sql = open(os.path.join(storage, res.result["artifact"]), encoding="utf-8").read()
    assert "CREATE TABLE public.items" in sql
    assert "audit_log" not in sql and "reporting.daily" not in sql
    res = run_module("dump", dict(job="pg-only", storage=dict(path=storage), compression="none",
                                  source=pg_source(pg_server, source_db, format="plain",
                                                   include_schemas=["reporting"])))
    assert res.rc == 0, res.result
    sql = open(os.path.join(storage, res.result["artifact"]), encoding="utf-8").read()
    assert "CREATE TABLE reporting.daily" in sql and "public.items" not in sql


def test_pg_dump_killed_mid_stream_fails_and_leaves_nothing(pg_server, tmp_path):
    """Also checks, while pg_dump runs, that its password is in its environment and not its argv."""
    name = "big_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    try:
        pg_server.psql("CREATE TABLE big AS SELECT g, md5(g::text) || repeat('y', 200) AS t "
                       "FROM generate_series(1, 400000) g", dbname=name)
        storage = str(tmp_path / "store")
        proc = start_module("dump", dict(job="pg-killed", source=pg_source(pg_server, name),
                                         storage=dict(path=storage), compression_level=19,
                                         compression_threads=1), tmp_path)
        pid = wait_for_child(proc.pid, "pg_dump", argv_contains=b"--format=custom")
        argv = cmdline(pid)
        with open("/proc/%d/environ" % pid, "rb") as handle:
            environ = handle.read().split(b"\0")
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, out
        assert b"pg_dump was killed by signal 9" in out
        assert stored_files(storage) == []
        assert ("PGPASSWORD=" + pg_server.password).encode() in environ
        assert not any(pg_server.password.encode() in arg for arg in argv)
    finally:
        pg_server.drop_database(name)


def test_pg_dump_older_than_server_is_refused_naming_both(pg_server, source_db, run_module, tmp_path):
    fake = tmp_path / "bin" / "pg_dump"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    fake.chmod(0o755)
    storage = tmp_path / "store"
    res = run_module("dump", dict(job="pg-old", source=pg_source(pg_server, source_db, executable=str(fake)),
                                  storage=dict(path=str(storage))))
    assert res.rc == 1
    msg = res.result["msg"]
    assert "pg_dump 9.6.24 is older than the PostgreSQL server %s" % pg_server.version in msg
    assert "postgresql-client-%s" % pg_server.version.split(".")[0] in msg
    assert stored_files(str(storage)) == []


def test_check_mode_connects_but_writes_nothing(pg_server, source_db, run_module, tmp_path):
    storage = tmp_path / "store"
    res = run_module("dump", dict(job="pg-check", source=pg_source(pg_server, source_db),
                                  storage=dict(path=str(storage))), check_mode=True)
    assert res.rc == 0, res.result
    assert res.result["changed"] is True
    assert res.result["artifact"].startswith("pg-check/") and res.result["artifact"].endswith(".dump.zst")
    assert res.result["manifest"]["server_version"] and res.result["manifest"]["sha256"] is None
    assert not storage.exists()
    res = run_module("dump", dict(job="pg-check", source=pg_source(pg_server, source_db, password="wrong-pw-123"),
                                  storage=dict(path=str(storage))), check_mode=True)
    assert res.rc == 1 and "password authentication failed" in res.result["msg"]


@pytest.mark.parametrize("override,expected", [
    (dict(database="no_such_db"), 'database "no_such_db" does not exist'),
    (dict(password="Wr0ng-Secret!"), "password authentication failed"),
    (dict(port=1), "cannot connect to PostgreSQL at"),
    (dict(format="custom", jobs=4), "source.jobs needs source.format: directory"),
])
def test_bad_connection_input_fails_before_writing(pg_server, source_db, run_module, tmp_path, override, expected):
    storage = tmp_path / "store"
    res = run_module("dump", dict(job="pg-bad", source=dict(pg_source(pg_server, source_db), **override),
                                  storage=dict(path=str(storage))))
    assert res.rc == 1
    assert expected in res.result["msg"]
    assert "Wr0ng-Secret!" not in res.stdout and pg_server.password not in res.stdout
    assert not storage.exists()


def test_directory_dump_tar_has_no_parent_paths(pg_server, source_db, run_module, tmp_path):
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="pg-dir2", compression="none", storage=dict(path=storage),
                                  source=pg_source(pg_server, source_db, format="directory")))
    assert res.rc == 0, res.result
    with tarfile.open(os.path.join(storage, res.result["artifact"])) as tar:
        names = tar.getnames()
    assert "toc.dat" in names and all("/" not in n and not n.startswith(".") for n in names)


def exact_counts(pg, dbname, tables):
    return {t if "." in t else "public." + t: int(pg.psql("SELECT count(*) FROM ONLY %s" % t, dbname=dbname).strip())
            for t in tables}


def test_table_counts_are_exact_and_follow_include_exclude(pg_server, source_db, run_module, tmp_path):
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="pg-counts", source=pg_source(pg_server, source_db), storage=dict(path=storage)))
    assert res.rc == 0, res.result
    path, manifest = check_artifact_matches_manifest(storage, res.result)
    assert manifest["table_counts"] == exact_counts(pg_server, source_db, TABLES)
    assert manifest["table_counts"]["public.items"] == 3001  # the view is not a table
    assert any(arg.startswith("--snapshot=") for arg in res.result["command"])

    res = run_module("dump", dict(job="pg-counts-ex", storage=dict(path=storage),
                                  source=pg_source(pg_server, source_db, exclude=["audit_*"],
                                                   exclude_schemas=["reporting"])))
    assert res.rc == 0, res.result
    assert res.result["manifest"]["table_counts"] == {"public.items": 3001}
    res = run_module("dump", dict(job="pg-counts-in", storage=dict(path=storage),
                                  source=pg_source(pg_server, source_db, format="plain", include=["reporting.*"])))
    assert res.rc == 0, res.result
    assert res.result["manifest"]["table_counts"] == {"reporting.daily": 32}
    res = run_module("dump", dict(job="pg-counts-dir", storage=dict(path=storage), spool_dir=str(tmp_path),
                                  source=pg_source(pg_server, source_db, format="directory", jobs=2)))
    assert res.rc == 0, res.result
    assert res.result["manifest"]["table_counts"] == exact_counts(pg_server, source_db, TABLES)


def test_row_counts_false_records_null(pg_server, source_db, run_module, tmp_path):
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="pg-nocount", source=pg_source(pg_server, source_db), storage=dict(path=storage),
                                  row_counts=False))
    assert res.rc == 0, res.result
    path, manifest = check_artifact_matches_manifest(storage, res.result)
    assert manifest["table_counts"] is None
    assert not any(arg.startswith("--snapshot") for arg in res.result["command"])


def test_table_counts_match_the_dump_while_a_writer_inserts(pg_server, fresh_db, run_module, tmp_path):
    """Counts and dump share one snapshot: under concurrent inserts the restored rows equal the counts."""
    name = "busy_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    writer = None
    try:
        pg_server.psql("CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat('y', 200) AS t "
                       "FROM generate_series(1, 200000) g; CREATE TABLE events (id serial PRIMARY KEY, at timestamptz)",
                       dbname=name)
        writer = subprocess.Popen(
            ["psql", "-X", "-q", "-d", name, "-c",
             "DO $$ BEGIN FOR i IN 1..1000000 LOOP INSERT INTO big VALUES (1000000 + i, 'w'); "
             "INSERT INTO events (at) VALUES (now()); COMMIT; PERFORM pg_sleep(0.0005); END LOOP; END $$"],
            env=restore_env(pg_server), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while int(pg_server.psql("SELECT count(*) FROM events", dbname=name).strip()) < 50:
            assert time.time() < deadline and writer.poll() is None
            time.sleep(0.05)
        storage = str(tmp_path / "store")
        res = run_module("dump", dict(job="pg-busy", source=pg_source(pg_server, name), storage=dict(path=storage)))
        assert res.rc == 0, res.result
        counted_after = exact_counts(pg_server, name, ["big", "events"])
        assert writer.poll() is None  # it wrote during the whole dump
    finally:
        if writer is not None:
            writer.kill()
            writer.wait()
        pg_server.drop_database(name)
    path, manifest = check_artifact_matches_manifest(storage, res.result)
    counts = manifest["table_counts"]
    assert set(counts) == {"public.big", "public.events"}
    assert counts["public.events"] >= 50 and counts["public.big"] >= 200050
    assert counted_after["public.events"] > counts["public.events"]  # writes went on after the snapshot
    pipe_into(decompress_cmd(path), ["pg_restore", "--no-owner", "--exit-on-error", "-d", fresh_db],
              restore_env(pg_server))
    assert exact_counts(pg_server, fresh_db, ["big", "events"]) == counts
