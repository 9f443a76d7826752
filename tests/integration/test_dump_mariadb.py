"""mysqldump / mariadb-dump source against a real MariaDB server."""

import os
import signal
import subprocess
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
CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(100) CHARACTER SET utf8mb4, photo BLOB, balance DECIMAL(10,2),
                        created DATETIME);
CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT, total DECIMAL(10,2));
CREATE TABLE scratch (x INT);
CREATE TRIGGER orders_nonneg BEFORE INSERT ON orders FOR EACH ROW SET NEW.total = GREATEST(NEW.total, 0);
CREATE PROCEDURE count_orders() SELECT COUNT(*) FROM orders;
INSERT INTO customers VALUES (1, 'Zoë ünïcødé', UNHEX('00FF10'), 12.50, '2026-01-02 03:04:05'),
                             (2, 'O''Brien "quoted"', NULL, NULL, NULL);
INSERT INTO orders (customer_id, total) VALUES (1, 10), (1, 20.5), (2, 7);
INSERT INTO scratch VALUES (1);
"""


ROW_QUERIES = {
    "customers": "SELECT id, name, HEX(photo), balance, created FROM customers ORDER BY id",
    "orders": "SELECT id, customer_id, total FROM orders ORDER BY id",
    "scratch": "SELECT x FROM scratch ORDER BY x",
}


def rows(server, database, table):
    return server.sql(ROW_QUERIES[table], database=database)


@pytest.fixture
def shop(mariadb_server):
    name = "shop_" + uuid.uuid4().hex[:8]
    mariadb_server.create_database(name)
    mariadb_server.sql(SCHEMA, database=name)
    yield name
    mariadb_server.drop_database(name)


def my_source(server, database, engine="mariadb", **extra):
    source = dict(engine=engine, host=server.host, port=server.port, user=server.user, password=server.password,
                  database=database)
    source.update(extra)
    return source


def restore_into(server, path, database):
    decompress = subprocess.Popen(decompress_cmd(path), stdout=subprocess.PIPE)
    load = subprocess.run(["mariadb", "--no-defaults", "-S", server.socket, "-uroot", database],
                          stdin=decompress.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    decompress.stdout.close()
    assert decompress.wait() == 0
    assert load.returncode == 0, load.stderr.decode()


@pytest.mark.parametrize("engine", ["mariadb", "mysql"])
def test_round_trip_with_stock_client(mariadb_server, shop, run_module, tmp_path, engine):
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="shop-" + engine, source=my_source(mariadb_server, shop, engine),
                                  storage=dict(path=storage)))
    assert res.rc == 0, res.result
    path, manifest = check_artifact_matches_manifest(storage, res.result)
    assert manifest["format"] == "sql" and "MariaDB" in manifest["server_version"]
    argv = res.result["command"]
    for flag in ("--single-transaction", "--routines", "--triggers", "--events"):
        assert flag in argv
    assert argv[1].startswith("--defaults-extra-file=/dev/fd/")
    target = "restored_" + uuid.uuid4().hex[:8]
    mariadb_server.create_database(target)
    try:
        restore_into(mariadb_server, path, target)
        for table in ("customers", "orders", "scratch"):
            assert rows(mariadb_server, target, table) == rows(mariadb_server, shop, table)
        triggers = mariadb_server.sql("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                                      "WHERE TRIGGER_SCHEMA='%s'" % target)
        assert "orders_nonneg" in triggers
        routines = mariadb_server.sql("SELECT ROUTINE_NAME FROM information_schema.ROUTINES "
                                      "WHERE ROUTINE_SCHEMA='%s'" % target)
        assert "count_orders" in routines
    finally:
        mariadb_server.drop_database(target)


def test_include_and_exclude_tables(mariadb_server, shop, run_module, tmp_path):
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="shop-ex", compression="none", storage=dict(path=storage),
                                  source=my_source(mariadb_server, shop, exclude=["scratch"])))
    assert res.rc == 0, res.result
    sql = open(os.path.join(storage, res.result["artifact"]), encoding="utf-8").read()
    assert "CREATE TABLE `customers`" in sql and "`scratch`" not in sql
    assert res.result["manifest"]["table_counts"] == {"customers": 2, "orders": 3}
    res = run_module("dump", dict(job="shop-in", compression="none", storage=dict(path=storage),
                                  source=my_source(mariadb_server, shop, include=["orders"])))
    assert res.rc == 0, res.result
    sql = open(os.path.join(storage, res.result["artifact"]), encoding="utf-8").read()
    assert "CREATE TABLE `orders`" in sql and "`customers`" not in sql
    assert res.result["manifest"]["table_counts"] == {"orders": 3}


def test_password_only_in_the_inherited_pipe(mariadb_server, shop, tmp_path):
    storage = str(tmp_path / "store")
    big = "big_" + uuid.uuid4().hex[:6]
    mariadb_server.create_database(big)
    try:
        mariadb_server.sql("CREATE TABLE b (id INT PRIMARY KEY, t TEXT); INSERT INTO b "
                           "SELECT seq, REPEAT(MD5(seq), 8) FROM seq_1_to_300000", database=big)
        proc = start_module("dump", dict(job="shop-argv", source=my_source(mariadb_server, big),
                                         storage=dict(path=storage), compression_level=19, compression_threads=1),
                            tmp_path)
        pid = wait_for_child(proc.pid, "mariadb-dump", argv_contains=b"--single-transaction")
        argv = cmdline(pid)
        with open("/proc/%d/environ" % pid, "rb") as handle:
            environ = handle.read()
        os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        mariadb_server.drop_database(big)
    assert not any(mariadb_server.password.encode() in arg for arg in argv)
    assert mariadb_server.password.encode() not in environ
    # killed mid-stream: the task fails, names the cause, and leaves nothing behind
    assert proc.returncode == 1
    assert b"mariadb-dump was killed by signal 9" in out
    assert stored_files(storage) == []


def test_wrong_password_and_unknown_database(mariadb_server, shop, run_module, tmp_path):
    storage = tmp_path / "store"
    res = run_module("dump", dict(job="shop-bad", storage=dict(path=str(storage)),
                                  source=my_source(mariadb_server, shop, password="N0t-The-Pw#")))
    assert res.rc == 1 and "Access denied" in res.result["msg"]
    assert "N0t-The-Pw#" not in res.stdout
    res = run_module("dump", dict(job="shop-bad", storage=dict(path=str(storage)),
                                  source=my_source(mariadb_server, "no_such_db")))
    assert res.rc == 1 and "no_such_db" in res.result["msg"] and "Unknown database" in res.result["msg"]
    assert not storage.exists()


def test_dump_without_footer_is_rejected(mariadb_server, shop, run_module, tmp_path):
    # A wrapper that behaves like a dump tool cut off before its footer (exit status 0).
    fake = tmp_path / "bin" / "mariadb-dump"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then exec /usr/bin/mariadb-dump --version; fi\n"
                    "/usr/bin/mariadb-dump \"$@\" | head -n 20\n")
    fake.chmod(0o755)
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="shop-cut", storage=dict(path=storage),
                                  source=my_source(mariadb_server, shop, executable=str(fake))))
    assert res.rc == 1
    assert "does not end with '-- Dump completed'" in res.result["msg"]
    assert stored_files(storage) == []


def test_table_counts_exact_views_left_out_and_row_counts_false(mariadb_server, shop, run_module, tmp_path):
    mariadb_server.sql("CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 8; "
                       "CREATE TABLE `odd``name` (x INT); INSERT INTO `odd``name` VALUES (1), (2), (3), (4);",
                       database=shop)
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="shop-counts", storage=dict(path=storage),
                                  source=my_source(mariadb_server, shop)))
    assert res.rc == 0, res.result
    path, manifest = check_artifact_matches_manifest(storage, res.result)
    expected = {table: int(mariadb_server.sql("SELECT COUNT(*) FROM `%s`" % table.replace("`", "``"),
                                              database=shop).strip())
                for table in ("customers", "orders", "scratch", "odd`name")}
    assert manifest["table_counts"] == expected == {"customers": 2, "orders": 3, "scratch": 1, "odd`name": 4}
    res = run_module("dump", dict(job="shop-nocounts", storage=dict(path=storage), row_counts=False,
                                  source=my_source(mariadb_server, shop)))
    assert res.rc == 0, res.result
    path, manifest = check_artifact_matches_manifest(storage, res.result)
    assert manifest["table_counts"] is None
