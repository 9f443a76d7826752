"""The restore module's restore test (scratch: true): throw-away target, row counts against the manifest, cleanup."""

import json
import os

import uuid

import pytest

from tests.integration.test_restore import MY_SCHEMA, PG_SCHEMA, dump, make_sqlite, my_conn, pg_conn, pg_exists, restore


@pytest.fixture
def pg_source_db(pg_server):
    name = "ssrc_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    pg_server.psql(PG_SCHEMA, dbname=name)
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def shop(mariadb_server):
    name = "sshop_" + uuid.uuid4().hex[:8]
    mariadb_server.create_database(name)
    mariadb_server.sql(MY_SCHEMA, database=name)
    yield name
    mariadb_server.drop_database(name)


def my_exists(server, name):
    return server.sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '%s'" % name) == "1"


def rewrite_counts(manifest_path, table, value):
    with open(manifest_path) as handle:
        record = json.load(handle)
    record["table_counts"][table] = value
    with open(manifest_path, "w") as handle:
        json.dump(record, handle)


def scratch_target(conn):
    conn = dict(conn)
    conn.pop("database")
    return conn


def test_postgresql_scratch_happy_path(pg_server, pg_source_db, run_module, tmp_path):
    storage = dict(path=str(tmp_path / "store"))
    dumped = dump(run_module, "pg-scr", pg_conn(pg_server, pg_source_db), storage)
    assert dumped["manifest"]["table_counts"] == {"public.items": 2001, "reporting.daily": 32}
    res = restore(run_module, storage, scratch_target(pg_conn(pg_server, pg_source_db)), job="pg-scr", scratch=True,
                  assertions=["SELECT count(*) = 2001 FROM items", "SELECT true"])
    assert res.rc == 0, res.result.get("msg")
    report = res.result["restore_test"]
    assert report["ok"] and report["dropped"]
    assert report["scratch"].startswith(pg_source_db + "_restore_test_")
    assert {r["table"]: (r["actual"], r["ok"]) for r in report["tables"]} == {
        "public.items": (2001, True), "reporting.daily": (32, True)}
    assert [a["ok"] for a in report["assertions"]] == [True, True]
    assert not pg_exists(pg_server, report["scratch"])


def test_postgresql_scratch_check_mode_and_refusals(pg_server, pg_source_db, run_module, tmp_path):
    storage = dict(path=str(tmp_path / "store"))
    dump(run_module, "pg-chk", pg_conn(pg_server, pg_source_db), storage)
    res = restore(run_module, storage, pg_conn(pg_server, "x" * 80), job="pg-chk", scratch=True, check_mode=True)
    assert res.rc == 0, res.result.get("msg")
    name = res.result["target"]["database"]
    assert len(name.encode()) == 63 and "_restore_test_" in name and not pg_exists(pg_server, name)
    assert "restore_test" not in res.result
    res = restore(run_module, storage, pg_conn(pg_server, pg_source_db), job="pg-chk", scratch=True, clean=True)
    assert res.rc != 0 and "clean cannot be combined with scratch" in res.result["msg"]


def test_postgresql_scratch_count_mismatch_and_failed_assertion(pg_server, pg_source_db, run_module, tmp_path):
    storage = dict(path=str(tmp_path / "store"))
    dumped = dump(run_module, "pg-bad", pg_conn(pg_server, pg_source_db), storage)
    rewrite_counts(os.path.join(storage["path"], dumped["manifest_key"]), "reporting.daily", 31)
    res = restore(run_module, storage, pg_conn(pg_server, pg_source_db), job="pg-bad", scratch=True,
                  assertions=["SELECT count(*) = 0 FROM items"])
    assert res.rc != 0
    msg = res.result["msg"]
    assert "reporting.daily has 32 rows, the manifest says 31" in msg and "assertion failed" in msg
    report = res.result["restore_test"]
    assert report["dropped"] and not report["ok"]
    bad = [r["table"] for r in report["tables"] if not r["ok"]]
    assert bad == ["reporting.daily"] and report["assertions"][0]["ok"] is False
    assert not pg_exists(pg_server, report["scratch"])


def test_mariadb_scratch_happy_mismatch_and_assertion(mariadb_server, shop, run_module, tmp_path):
    storage = dict(path=str(tmp_path / "store"))
    dumped = dump(run_module, "shop-scr", my_conn(mariadb_server, shop), storage)
    assert dumped["manifest"]["table_counts"] == {"customers": 2, "orders": 3}
    target = my_conn(mariadb_server, shop)
    res = restore(run_module, storage, target, job="shop-scr", scratch=True,
                  assertions=["SELECT COUNT(*) = 3 FROM orders"])
    assert res.rc == 0, res.result.get("msg")
    report = res.result["restore_test"]
    assert report["ok"] and report["dropped"] and report["scratch"].startswith(shop + "_restore_test_")
    assert [(r["table"], r["expected"], r["actual"]) for r in report["tables"]] == [
        ("customers", 2, 2), ("orders", 3, 3)]
    assert not my_exists(mariadb_server, report["scratch"])
    # a failing assertion fails the task; the scratch is dropped all the same
    res = restore(run_module, storage, target, job="shop-scr", scratch=True,
                  assertions=["SELECT COUNT(*) = 99 FROM orders"])
    assert res.rc != 0 and "assertion failed: SELECT COUNT(*) = 99 FROM orders" in res.result["msg"]
    assert res.result["restore_test"]["dropped"]
    assert not my_exists(mariadb_server, res.result["restore_test"]["scratch"])
    # a fabricated count mismatch names the table
    rewrite_counts(os.path.join(storage["path"], dumped["manifest_key"]), "customers", 5)
    res = restore(run_module, storage, target, job="shop-scr", scratch=True)
    assert res.rc != 0 and "table customers has 2 rows, the manifest says 5" in res.result["msg"]
    assert res.result["restore_test"]["dropped"]
    assert not my_exists(mariadb_server, res.result["restore_test"]["scratch"])


def test_sqlite_scratch_happy_path_and_missing_table(run_module, tmp_path):
    db = str(tmp_path / "app.sqlite3")
    make_sqlite(db)
    storage = dict(path=str(tmp_path / "store"))
    spool = tmp_path / "spool"
    spool.mkdir()
    dumped = dump(run_module, "app-scr", dict(engine="sqlite", path=db), storage)
    res = restore(run_module, storage, dict(engine="sqlite"), job="app-scr", scratch=True, spool_dir=str(spool))
    assert res.rc == 0, res.result.get("msg")
    report = res.result["restore_test"]
    assert report["ok"] and report["dropped"] and report["tables"] == [
        {"table": "pairs", "expected": 3000, "actual": 3000, "ok": True}]
    assert os.listdir(str(spool)) == []
    rewrite_counts(os.path.join(storage["path"], dumped["manifest_key"]), "ghost", 1)
    res = restore(run_module, storage, dict(engine="sqlite"), job="app-scr", scratch=True, spool_dir=str(spool))
    assert res.rc != 0 and "table ghost (1 rows in the manifest) is missing" in res.result["msg"]
    assert os.listdir(str(spool)) == []


def test_files_scratch_reports_files_and_bytes(run_module, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"hello")
    (tree / "sub" / "b.bin").write_bytes(b"x" * 1000)
    storage = dict(path=str(tmp_path / "store"))
    spool = tmp_path / "spool"
    spool.mkdir()
    dump(run_module, "tree-scr", dict(engine="files", path=str(tree)), storage)
    res = restore(run_module, storage, dict(engine="files"), job="tree-scr", scratch=True, spool_dir=str(spool))
    assert res.rc == 0, res.result.get("msg")
    report = res.result["restore_test"]
    assert report["ok"] and report["dropped"] and report["files"] == 2 and report["bytes"] == 1005
    assert os.listdir(str(spool)) == []


def test_no_table_counts_warns_only(run_module, tmp_path):
    db = str(tmp_path / "app.sqlite3")
    make_sqlite(db)
    storage = dict(path=str(tmp_path / "store"))
    dump(run_module, "app-nc", dict(engine="sqlite", path=db), storage, row_counts=False)
    res = restore(run_module, storage, dict(engine="sqlite"), job="app-nc", scratch=True)
    assert res.rc == 0, res.result.get("msg")
    assert res.result["restore_test"]["tables"] == [{"table": "pairs", "expected": None, "actual": 3000,
                                                     "ok": None}]
    assert "not compared" in res.stdout + res.stderr + json.dumps(res.result)

