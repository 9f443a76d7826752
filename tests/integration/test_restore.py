"""The restore module against real servers: round trips per engine and storage, and its refusals."""

import hashlib
import io
import json
import os
import sqlite3
import stat
import subprocess
import tarfile
import uuid

import pytest

PG_SCHEMA = """
CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(12,2), data bytea);
INSERT INTO items SELECT g, 'item ' || g || ' ünïcødé', g * 1.25, decode(md5(g::text), 'hex')
  FROM generate_series(1, 2000) g;
INSERT INTO items VALUES (0, NULL, NULL, NULL);
CREATE SCHEMA reporting;
CREATE TABLE reporting.daily (day date PRIMARY KEY, total numeric);
INSERT INTO reporting.daily SELECT d::date, 42 FROM generate_series('2026-01-01'::date, '2026-02-01', '1 day') d;
CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 10;
"""
PG_TABLES = ["items", "reporting.daily"]

MY_SCHEMA = """
CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(100) CHARACTER SET utf8mb4, photo BLOB, balance DECIMAL(10,2));
CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT, total DECIMAL(10,2));
INSERT INTO customers VALUES (1, 'Zoë ünïcødé', UNHEX('00FF10'), 12.50), (2, 'O''Brien "quoted"', NULL, NULL);
INSERT INTO orders (customer_id, total) VALUES (1, 10), (1, 20.5), (2, 7);
"""
MY_QUERIES = ["SELECT id, name, HEX(photo), balance FROM customers ORDER BY id",
              "SELECT id, customer_id, total FROM orders ORDER BY id"]


def pg_digest(pg, dbname, table):
    sql = "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM %s t" % table
    return pg.psql(sql, dbname=dbname).strip()


def pg_relations(pg, dbname):
    return int(pg.psql("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE c.relkind IN ('r', 'v') AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
                       dbname=dbname).strip())


def pg_exists(pg, dbname):
    return pg.psql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % dbname).strip() == "1"


def pg_conn(pg, database):
    return dict(engine="postgresql", host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                database=database)


def my_conn(server, database):
    return dict(engine="mariadb", host=server.host, port=server.port, user=server.user, password=server.password,
                database=database)


def dump(run_module, job, source, storage, **extra):
    res = run_module("dump", dict(job=job, source=source, storage=storage, **extra))
    assert res.rc == 0, res.result.get("msg")
    return res.result


def restore(run_module, storage, target, check_mode=False, **extra):
    args = dict(storage=storage, target=target)
    args.update(extra)
    if "manifest_key" not in args and "before" not in args:
        args.setdefault("latest", True)
    return run_module("restore", args, check_mode=check_mode)


def flip_byte(path, offset=None):
    size = os.path.getsize(path)
    offset = size // 2 if offset is None else offset
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture
def pg_source_db(pg_server):
    name = "rsrc_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    pg_server.psql(PG_SCHEMA, dbname=name)
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def pg_target_name(pg_server):
    """A database name that does not exist yet (dropped afterwards if a test created it)."""
    name = "rdst_" + uuid.uuid4().hex[:8]
    yield name
    pg_server.drop_database(name)


# -- PostgreSQL -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["custom", "plain", "directory"])
def test_postgresql_round_trip(pg_server, pg_source_db, pg_target_name, run_module, tmp_path, fmt):
    storage = dict(path=str(tmp_path / "store"))
    source = dict(pg_conn(pg_server, pg_source_db), format=fmt)
    extra = {}
    if fmt == "directory":
        source["jobs"] = 2
        spool = tmp_path / "spool"
        spool.mkdir()
        extra = dict(jobs=2, spool_dir=str(spool))
    dumped = dump(run_module, "pg-" + fmt, source, storage, **({"spool_dir": extra["spool_dir"]} if extra else {}))
    res = restore(run_module, storage, pg_conn(pg_server, pg_target_name), create_database=True, job="pg-" + fmt,
                  **extra)
    assert res.rc == 0, res.result.get("msg")
    result = res.result
    assert result["changed"] and result["manifest_key"] == dumped["manifest_key"]
    assert result["sha256"] == dumped["manifest"]["sha256"]
    assert result["engine"] == "postgresql" and result["target"]["database"] == pg_target_name
    assert "password" not in result["target"] and pg_server.password not in res.stdout + res.stderr
    assert pg_server.password not in json.dumps(result["command"])
    expected_reads = 1 if fmt == "directory" else 2  # verify_first re-reads custom and plain
    assert result["bytes_read"] == expected_reads * dumped["manifest"]["stored_size"]
    if fmt == "directory":
        assert "--jobs=2" in result["command"] and os.listdir(extra["spool_dir"]) == []
    for table in PG_TABLES:
        assert pg_digest(pg_server, pg_target_name, table) == pg_digest(pg_server, pg_source_db, table)
    assert pg_server.psql("SELECT count(*) FROM cheap", dbname=pg_target_name).strip() == \
        pg_server.psql("SELECT count(*) FROM cheap", dbname=pg_source_db).strip()


def test_postgresql_non_empty_target_refused_then_clean(pg_server, pg_source_db, pg_target_name, run_module,
                                                        tmp_path):
    storage = dict(path=str(tmp_path / "store"))
    dump(run_module, "pg-again", pg_conn(pg_server, pg_source_db), storage)
    target = pg_conn(pg_server, pg_target_name)
    assert restore(run_module, storage, target, job="pg-again", create_database=True).rc == 0
    pg_server.psql("UPDATE items SET name = 'changed'", dbname=pg_target_name)
    res = restore(run_module, storage, target, job="pg-again")
    assert res.rc != 0 and "not empty" in res.result["msg"] and "clean or force" in res.result["msg"]
    assert pg_server.psql("SELECT count(*) FROM items WHERE name = 'changed'", dbname=pg_target_name).strip() \
        == "2001"
    res = restore(run_module, storage, target, job="pg-again", clean=True)
    assert res.rc == 0, res.result.get("msg")
    assert "--clean" in res.result["command"]
    for table in PG_TABLES:
        assert pg_digest(pg_server, pg_target_name, table) == pg_digest(pg_server, pg_source_db, table)


def test_postgresql_subset_of_tables(pg_server, pg_source_db, pg_target_name, run_module, tmp_path):
    storage = dict(path=str(tmp_path / "store"))
    dump(run_module, "pg-subset", pg_conn(pg_server, pg_source_db), storage)
    res = restore(run_module, storage, pg_conn(pg_server, pg_target_name), job="pg-subset", create_database=True,
                  tables=["items"])
    assert res.rc == 0, res.result.get("msg")
    assert "--table=items" in res.result["command"]
    assert pg_digest(pg_server, pg_target_name, "items") == pg_digest(pg_server, pg_source_db, "items")
    assert pg_relations(pg_server, pg_target_name) == 1


def test_postgresql_corrupt_artifact_fails_before_loading(pg_server, pg_source_db, pg_target_name, run_module,
                                                          tmp_path):
    store = tmp_path / "store"
    dumped = dump(run_module, "pg-bad", pg_conn(pg_server, pg_source_db), dict(path=str(store)))
    flip_byte(str(store / dumped["artifact"]))
    pg_server.create_database(pg_target_name)
    res = restore(run_module, dict(path=str(store)), pg_conn(pg_server, pg_target_name), job="pg-bad")
    assert res.rc != 0
    assert "SHA-256" in res.result["msg"] and "nothing was restored" in res.result["msg"]
    assert pg_relations(pg_server, pg_target_name) == 0


def test_postgresql_check_mode_writes_nothing(pg_server, pg_source_db, pg_target_name, run_module, tmp_path):
    storage = dict(path=str(tmp_path / "store"))
    dumped = dump(run_module, "pg-check", pg_conn(pg_server, pg_source_db), storage)
    res = restore(run_module, storage, pg_conn(pg_server, pg_target_name), check_mode=True,
                  manifest_key=dumped["manifest_key"], create_database=True)
    assert res.rc == 0, res.result.get("msg")
    assert res.result["changed"] and res.result["actions"][0] == "create database %s" % pg_target_name
    assert res.result["bytes_read"] == dumped["manifest"]["stored_size"]
    assert not pg_exists(pg_server, pg_target_name)
    res = restore(run_module, storage, pg_conn(pg_server, pg_target_name), check_mode=True, job="pg-check")
    assert res.rc != 0 and "does not exist" in res.result["msg"]


def test_engine_mismatch_and_selection_errors(pg_server, pg_source_db, run_module, tmp_path):
    storage = dict(path=str(tmp_path / "store"))
    dump(run_module, "pg-mis", pg_conn(pg_server, pg_source_db), storage)
    res = restore(run_module, storage, dict(engine="sqlite", path=str(tmp_path / "x.db")), job="pg-mis")
    assert res.rc != 0 and "cannot be restored into a sqlite target" in res.result["msg"]
    assert not (tmp_path / "x.db").exists()
    res = run_module("restore", dict(storage=storage, job="pg-mis", target=dict(engine="sqlite", path="/tmp/x")))
    assert res.rc != 0 and "exactly one of" in res.result["msg"]
    res = restore(run_module, storage, pg_conn(pg_server, "whatever"), job="pg-mis", before="2000-01-01")
    assert res.rc != 0 and "no backup of job pg-mis" in res.result["msg"]
    res = restore(run_module, storage, pg_conn(pg_server, "whatever"), job="pg-mis", before="yesterday")
    assert res.rc != 0 and "ISO 8601" in res.result["msg"]


def test_postgresql_from_s3(pg_server, pg_source_db, pg_target_name, run_module, s3_bucket, s3_storage_params):
    storage = s3_storage_params(s3_bucket, prefix="prod")
    dumped = dump(run_module, "pg-s3", pg_conn(pg_server, pg_source_db), storage)
    res = restore(run_module, storage, pg_conn(pg_server, pg_target_name), job="pg-s3", latest=True,
                  create_database=True)
    assert res.rc == 0, res.result.get("msg")
    assert res.result["manifest_key"] == dumped["manifest_key"]
    for table in PG_TABLES:
        assert pg_digest(pg_server, pg_target_name, table) == pg_digest(pg_server, pg_source_db, table)


# -- MariaDB ----------------------------------------------------------------------------------------
@pytest.fixture
def shop(mariadb_server):
    name = "rshop_" + uuid.uuid4().hex[:8]
    mariadb_server.create_database(name)
    mariadb_server.sql(MY_SCHEMA, database=name)
    yield name
    mariadb_server.drop_database(name)


@pytest.fixture
def my_target_name(mariadb_server):
    name = "rdst_" + uuid.uuid4().hex[:8]
    yield name
    mariadb_server.drop_database(name)


def test_mariadb_round_trip_and_non_empty_refused(mariadb_server, shop, my_target_name, run_module, tmp_path):
    storage = dict(path=str(tmp_path / "store"))
    dumped = dump(run_module, "shop", my_conn(mariadb_server, shop), storage)
    target = my_conn(mariadb_server, my_target_name)
    res = restore(run_module, storage, target, job="shop", create_database=True)
    assert res.rc == 0, res.result.get("msg")
    assert res.result["sha256"] == dumped["manifest"]["sha256"]
    assert "--defaults-extra-file=/dev/fd/N" in res.result["command"]
    assert mariadb_server.password not in res.stdout + res.stderr
    for query in MY_QUERIES:
        assert mariadb_server.sql(query, database=my_target_name) == mariadb_server.sql(query, database=shop)
    mariadb_server.sql("DELETE FROM orders", database=my_target_name)
    res = restore(run_module, storage, target, job="shop")
    assert res.rc != 0 and "not empty" in res.result["msg"]
    assert mariadb_server.sql("SELECT COUNT(*) FROM orders", database=my_target_name) == "0"
    res = restore(run_module, storage, target, job="shop", force=True)
    assert res.rc == 0, res.result.get("msg")
    for query in MY_QUERIES:
        assert mariadb_server.sql(query, database=my_target_name) == mariadb_server.sql(query, database=shop)


def test_mariadb_corrupt_artifact_fails_before_loading(mariadb_server, shop, my_target_name, run_module, tmp_path):
    store = tmp_path / "store"
    dumped = dump(run_module, "shop-bad", my_conn(mariadb_server, shop), dict(path=str(store)), compression="none")
    flip_byte(str(store / dumped["artifact"]), offset=10)
    res = restore(run_module, dict(path=str(store)), my_conn(mariadb_server, my_target_name), job="shop-bad",
                  create_database=True)
    assert res.rc != 0 and "SHA-256" in res.result["msg"]
    assert mariadb_server.sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '%s'"
                              % my_target_name) == "0"


# -- SQLite -----------------------------------------------------------------------------------------
def make_sqlite(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE pairs (grp INTEGER, side TEXT, payload BLOB)")
    conn.execute("CREATE INDEX pairs_grp ON pairs(grp)")
    conn.executemany("INSERT INTO pairs VALUES (?, ?, ?)",
                     [(g, s, os.urandom(50)) for g in range(1500) for s in ("a", "ü")])
    conn.commit()
    conn.close()


def sqlite_dump(path):
    return subprocess.run(["sqlite3", path, ".dump"], check=True, stdout=subprocess.PIPE).stdout


def test_sqlite_round_trip_force_and_check_mode(run_module, tmp_path):
    db = str(tmp_path / "app.sqlite3")
    make_sqlite(db)
    storage = dict(path=str(tmp_path / "store"))
    dump(run_module, "app-db", dict(engine="sqlite", path=db), storage)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = dict(engine="sqlite", path=str(out_dir / "restored.sqlite3"))
    res = restore(run_module, storage, target, check_mode=True, job="app-db")
    assert res.rc == 0, res.result.get("msg")
    assert os.listdir(str(out_dir)) == []
    res = restore(run_module, storage, target, job="app-db")
    assert res.rc == 0, res.result.get("msg")
    assert sqlite_dump(target["path"]) == sqlite_dump(db)
    assert os.listdir(str(out_dir)) == ["restored.sqlite3"]
    res = restore(run_module, storage, target, job="app-db")
    assert res.rc != 0 and "set force" in res.result["msg"]
    conn = sqlite3.connect(target["path"])
    conn.execute("DELETE FROM pairs")
    conn.commit()
    conn.close()
    res = restore(run_module, storage, target, job="app-db", force=True)
    assert res.rc == 0, res.result.get("msg")
    assert sqlite_dump(target["path"]) == sqlite_dump(db)


def test_sqlite_corrupt_artifact_leaves_no_file(run_module, tmp_path):
    db = str(tmp_path / "app.sqlite3")
    make_sqlite(db)
    store = tmp_path / "store"
    dumped = dump(run_module, "app-bad", dict(engine="sqlite", path=db), dict(path=str(store)), compression="none")
    flip_byte(str(store / dumped["artifact"]))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    res = restore(run_module, dict(path=str(store)), dict(engine="sqlite", path=str(out_dir / "r.sqlite3")),
                  job="app-bad")
    assert res.rc != 0 and "SHA-256" in res.result["msg"] and "left as it was" in res.result["msg"]
    assert os.listdir(str(out_dir)) == []


def test_sqlite_from_sftp(run_module, tmp_path, sftp_storage_params):
    db = str(tmp_path / "app.sqlite3")
    make_sqlite(db)
    dumped = dump(run_module, "app-sftp", dict(engine="sqlite", path=db), sftp_storage_params)
    target = str(tmp_path / "restored.sqlite3")
    res = restore(run_module, sftp_storage_params, dict(engine="sqlite", path=target),
                  manifest_key=dumped["manifest_key"])
    assert res.rc == 0, res.result.get("msg")
    assert sqlite_dump(target) == sqlite_dump(db)


# -- files ------------------------------------------------------------------------------------------
def make_tree(root):
    os.makedirs(os.path.join(root, "etc", "conf.d"))
    os.makedirs(os.path.join(root, "empty"))
    with open(os.path.join(root, "etc", "app.conf"), "w") as handle:
        handle.write("key = value\n")
    with open(os.path.join(root, "etc", "conf.d", "secret.key"), "wb") as handle:
        handle.write(os.urandom(3000))
    os.chmod(os.path.join(root, "etc", "conf.d", "secret.key"), 0o600)
    with open(os.path.join(root, "run.sh"), "w") as handle:
        handle.write("#!/bin/sh\necho hi\n")
    os.chmod(os.path.join(root, "run.sh"), 0o755)
    os.symlink("etc/app.conf", os.path.join(root, "app.conf"))
    os.link(os.path.join(root, "run.sh"), os.path.join(root, "etc", "run-again.sh"))
    os.chmod(os.path.join(root, "etc", "conf.d"), 0o750)


def tree(root):
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                with open(path, "rb") as handle:
                    found[rel] = ("file", stat.S_IMODE(info.st_mode), handle.read(), int(info.st_mtime))
    return found


def test_files_round_trip_and_non_empty_refused(run_module, tmp_path):
    src = str(tmp_path / "src")
    make_tree(src)
    storage = dict(path=str(tmp_path / "store"))
    dump(run_module, "files", dict(engine="files", path=src), storage)
    target = str(tmp_path / "restored")
    res = restore(run_module, storage, dict(engine="files", path=target), check_mode=True, job="files")
    assert res.rc == 0, res.result.get("msg")
    assert not os.path.exists(target)
    res = restore(run_module, storage, dict(engine="files", path=target), job="files")
    assert res.rc == 0, res.result.get("msg")
    assert tree(target) == tree(src)
    assert os.stat(os.path.join(target, "run.sh")).st_ino == os.stat(os.path.join(target, "etc", "run-again.sh")).st_ino
    assert sorted(os.listdir(str(tmp_path))) == ["restored", "src", "store"]  # no temp folder left
    with open(os.path.join(target, "run.sh"), "w") as handle:
        handle.write("changed")
    res = restore(run_module, storage, dict(engine="files", path=target), job="files")
    assert res.rc != 0 and "not empty" in res.result["msg"]
    res = restore(run_module, storage, dict(engine="files", path=target), job="files", force=True)
    assert res.rc == 0, res.result.get("msg")
    assert tree(target) == tree(src)


def test_files_corrupt_artifact_leaves_target_as_it_was(run_module, tmp_path):
    src = str(tmp_path / "src")
    make_tree(src)
    store = tmp_path / "store"
    dumped = dump(run_module, "files-bad", dict(engine="files", path=src), dict(path=str(store)))
    flip_byte(str(store / dumped["artifact"]))
    target = tmp_path / "restored"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    res = restore(run_module, dict(path=str(store)), dict(engine="files", path=str(target)), job="files-bad",
                  force=True)
    assert res.rc != 0
    assert os.listdir(str(target)) == ["keep.txt"]
    assert sorted(os.listdir(str(tmp_path))) == ["restored", "src", "store"]


def store_tar(store, job, members):
    """Write a crafted tar as a files backup of ``job`` (artifact + manifest with the right sha256)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, extra in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(extra)
                tar.addfile(info, io.BytesIO(extra))
            else:
                info.type = tarfile.SYMTYPE
                info.linkname = extra
                tar.addfile(info)
    data = buf.getvalue()
    stem = "%s/2026/11/23/%s-20261123T020000Z" % (job, job)
    folder = store / os.path.dirname(stem)
    folder.mkdir(parents=True)
    (store / (stem + ".tar")).write_bytes(data)
    record = dict(format_version=1, job=job, engine="files", database=None, format="tar", kind="scheduled",
                  artifact=stem + ".tar", stored_size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                  compression=dict(algorithm="none"), encryption=None, chunks=[], started="2026-11-23T02:00:00Z")
    (store / (stem + ".manifest.json")).write_text(json.dumps(record))
    return stem + ".manifest.json"


@pytest.mark.parametrize("members,reason", [
    ([("ok.txt", "file", b"fine"), ("../evil", "file", b"owned")], "'..' component"),
    ([("ok.txt", "file", b"fine"), ("/tmp/evil-abs", "file", b"owned")], "absolute path"),
    ([("link", "link", "../../outside"), ("x", "file", b"")], "outside the restored tree"),
    ([("link", "link", "/etc"), ("x", "file", b"")], "absolute path"),
    ([("sub", "link", "."), ("sub/x", "file", b"x")], "symbolic link"),
    ([("a/b/c/up", "link", "../../.."), ("a/b/c/esc", "link", "up/..")], "resolves outside"),
])
def test_files_unsafe_tar_members_refused(run_module, tmp_path, members, reason):
    store = tmp_path / "store"
    key = store_tar(store, "evil", members)
    work = tmp_path / "work"
    work.mkdir()
    target = work / "restored"
    res = restore(run_module, dict(path=str(store)), dict(engine="files", path=str(target)), manifest_key=key)
    assert res.rc != 0, res.result
    assert reason in res.result["msg"] and "refused" in res.result["msg"]
    assert os.listdir(str(work)) == [] and not os.path.exists(str(tmp_path / "evil"))
    assert not os.path.exists("/tmp/evil-abs")


def test_postgresql_create_database_with_odd_name(pg_server, pg_source_db, run_module, tmp_path):
    name = 'rdst %s "q" \'x\'' % uuid.uuid4().hex[:6]
    storage = dict(path=str(tmp_path / "store"))
    dump(run_module, "pg-odd", pg_conn(pg_server, pg_source_db), storage)
    try:
        res = restore(run_module, storage, pg_conn(pg_server, name), job="pg-odd", create_database=True)
        assert res.rc == 0, res.result.get("msg")
        for table in PG_TABLES:
            assert pg_digest(pg_server, name, table) == pg_digest(pg_server, pg_source_db, table)
    finally:
        pg_server.drop_database(name)
