"""docs/restore-without-this-tool.md, executed: the blocks marked `<!-- test: NAME -->` run
literally with bash against backups made by the dump module, and the restored data is compared
with the source. Variables come from the environment, never from edits of the blocks."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "restore-without-this-tool.md"
MARKED = re.compile(r"<!-- test: ([a-z0-9-]+) -->\n```sh\n(.*?)\n```", re.S)
EXPECTED = {
    "helpers", "fetch-local", "fetch-s3-aws", "fetch-s3-curl", "fetch-s3-presigned", "fetch-sftp",
    "load-pg-custom", "load-pg-plain", "load-pg-directory", "load-mariadb", "load-sqlite", "load-files",
    "decrypt-age", "decrypt-gpg", "fetch-local-chunks",
}


def blocks() -> dict:
    found = {}
    for name, code in MARKED.findall(DOC.read_text(encoding="utf-8")):
        assert name not in found, f"marker {name} used twice"
        found[name] = code
    return found


def test_every_marked_block_is_present():
    assert set(blocks()) == EXPECTED


def run_doc(names, env, tmp_path) -> str:
    """Run the helpers plus the named blocks in one bash, strict mode; return stdout."""
    code = blocks()
    script = "set -euo pipefail\n" + "\n".join(code[n] for n in ["helpers", *names]) + "\n"
    path = tmp_path / ("doc-" + "-".join(names) + ".sh")
    path.write_text(script)
    full_env = dict(os.environ, WORK=str(tmp_path / "work"), **{k: str(v) for k, v in env.items()})
    proc = subprocess.run(["bash", str(path)], env=full_env, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{names} failed rc={proc.returncode}\nstdout={proc.stdout}\nstderr={proc.stderr}"
    assert ": OK" in proc.stdout, proc.stdout  # sha256sum -c ran and passed
    return proc.stdout


def dump(run_module, job, source, storage, **extra):
    res = run_module("dump", dict(job=job, source=source, storage=storage, **extra))
    assert res.rc == 0, res.describe()
    return res.result["manifest"]


# ---------------------------------------------------------------- sources and comparisons

PG_SCHEMA = """
CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(12,2), data bytea);
INSERT INTO items SELECT g, 'item ' || g || ' ünïcødé', g * 1.25, decode(md5(g::text), 'hex')
  FROM generate_series(1, 2000) g;
CREATE SCHEMA reporting;
CREATE TABLE reporting.daily (day date PRIMARY KEY, total numeric);
INSERT INTO reporting.daily SELECT d::date, 42 FROM generate_series('2026-01-01'::date, '2026-02-01', '1 day') d;
"""
PG_TABLES = ["items", "reporting.daily"]


def pg_digest(pg, dbname):
    out = []
    for table in PG_TABLES:
        sql = ("SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "
               "FROM %s t" % table)
        out.append(pg.psql(sql, dbname=dbname).strip())
    return out


@pytest.fixture
def pg_source_db(pg_server):
    name = "docsrc_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    pg_server.psql(PG_SCHEMA, dbname=name)
    yield name
    pg_server.drop_database(name)


def pg_env(pg, target):
    return dict(PGHOST=pg.host, PGPORT=pg.port, PGUSER=pg.user, PGPASSWORD=pg.password, TARGET_DB=target)


MY_SCHEMA = """
CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(100) CHARACTER SET utf8mb4, photo BLOB);
CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT, total DECIMAL(10,2));
INSERT INTO customers VALUES (1, 'Zoë ünïcødé', UNHEX('00FF10')), (2, 'O''Brien "quoted"', NULL);
INSERT INTO orders (customer_id, total) VALUES (1, 10), (1, 20.5), (2, 7);
"""
MY_QUERIES = ["SELECT COUNT(*) FROM customers", "SELECT id, name, HEX(photo) FROM customers ORDER BY id",
              "SELECT COUNT(*) FROM orders", "SELECT id, customer_id, total FROM orders ORDER BY id"]


def my_digest(server, database):
    return [server.sql(q, database=database) for q in MY_QUERIES]


def make_sqlite(path, rows):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO notes (body) VALUES (?)", [("note %d ünïcødé" % i,) for i in range(rows)])
    conn.commit()
    conn.close()


def sqlite_dump(path):
    return subprocess.run(["sqlite3", str(path), ".dump"], check=True, capture_output=True).stdout


def build_tree(root: Path):
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "app.conf").write_text("key = value\n")
    os.chmod(root / "etc" / "app.conf", 0o600)
    (root / "data" / "deep").mkdir(parents=True)
    (root / "data" / "blob.bin").write_bytes(os.urandom(200000))
    (root / "data" / "ünïcødé name.txt").write_text("unicode\n")
    (root / "data" / "deep" / "empty").write_bytes(b"")
    os.symlink("../etc/app.conf", root / "data" / "conf-link")


def tree(root: Path) -> dict:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", st.st_mode)
        else:
            out[rel] = ("file", st.st_mode, path.read_bytes())
    return out


# ---------------------------------------------------------------- every engine from local storage

def local_env(storage, job):
    return dict(BACKUP_ROOT=storage, PREFIX="prod", JOB=job)


@pytest.mark.parametrize("fmt,compression,block", [
    ("custom", "zstd", "load-pg-custom"),
    ("plain", "gzip", "load-pg-plain"),
    ("directory", "lz4", "load-pg-directory"),
])
def test_postgresql_from_local(pg_server, pg_source_db, run_module, tmp_path, fmt, compression, block):
    storage = str(tmp_path / "store")
    source = dict(engine="postgresql", host=pg_server.host, port=pg_server.port, user=pg_server.user,
                  password=pg_server.password, database=pg_source_db, format=fmt)
    dump(run_module, "orders-db", source, dict(type="local", path=storage, prefix="prod"), compression=compression)
    target = "docrestored_" + uuid.uuid4().hex[:8]
    try:
        run_doc(["fetch-local", block], {**local_env(storage, "orders-db"), **pg_env(pg_server, target)}, tmp_path)
        assert pg_digest(pg_server, target) == pg_digest(pg_server, pg_source_db)
    finally:
        pg_server.drop_database(target)


@pytest.fixture
def shop(mariadb_server):
    name = "docshop_" + uuid.uuid4().hex[:8]
    mariadb_server.create_database(name)
    mariadb_server.sql(MY_SCHEMA, database=name)
    yield name
    mariadb_server.drop_database(name)


def my_cnf(server, tmp_path):
    cnf = tmp_path / "client.cnf"
    cnf.write_text(f"[client]\nsocket = {server.socket}\nuser = root\n")
    cnf.chmod(0o600)
    return str(cnf)


def test_mariadb_from_local(mariadb_server, shop, run_module, tmp_path):
    storage = str(tmp_path / "store")
    source = dict(engine="mariadb", host=mariadb_server.host, port=mariadb_server.port, user=mariadb_server.user,
                  password=mariadb_server.password, database=shop)
    dump(run_module, "shop-db", source, dict(type="local", path=storage, prefix="prod"))
    target = "docrestored_" + uuid.uuid4().hex[:8]
    env = {**local_env(storage, "shop-db"), "TARGET_DB": target, "MYSQL_CNF": my_cnf(mariadb_server, tmp_path)}
    try:
        run_doc(["fetch-local", "load-mariadb"], env, tmp_path)
        assert my_digest(mariadb_server, target) == my_digest(mariadb_server, shop)
    finally:
        mariadb_server.drop_database(target)


def two_sqlite_backups(run_module, tmp_path, storage, **extra):
    """Two backups a second apart; the database as of the second (newest) one is returned."""
    db = tmp_path / "app.sqlite3"
    make_sqlite(db, 10)
    dump(run_module, "app-db", dict(engine="sqlite", path=str(db)), storage, **extra)
    time.sleep(1.1)
    make_sqlite(db, 25)
    dump(run_module, "app-db", dict(engine="sqlite", path=str(db)), storage, **extra)
    return db


def test_sqlite_from_local_uncompressed(run_module, tmp_path):
    storage = str(tmp_path / "store")
    db = two_sqlite_backups(run_module, tmp_path, dict(type="local", path=storage, prefix="prod"),
                            compression="none")
    target = tmp_path / "restored.sqlite3"
    out = run_doc(["fetch-local", "load-sqlite"], {**local_env(storage, "app-db"), "TARGET_PATH": target}, tmp_path)
    assert "\nok\n" in "\n" + out
    assert sqlite_dump(target) == sqlite_dump(db)
    assert not Path(str(target) + ".restoring").exists()


def test_files_from_local(run_module, tmp_path):
    root = tmp_path / "src"
    build_tree(root)
    storage = str(tmp_path / "store")
    dump(run_module, "app-files", dict(engine="files", path=str(root)),
         dict(type="local", path=storage, prefix="prod"), compression="gzip")
    target = tmp_path / "restored-files"
    run_doc(["fetch-local", "load-files"], {**local_env(storage, "app-files"), "TARGET_DIR": target}, tmp_path)
    assert tree(target) == tree(root)


# ---------------------------------------------------------------- every storage type

def s3_env(s3_server, bucket, prefix):
    return dict(BUCKET=bucket, PREFIX=prefix, JOB="app-db", AWS_ACCESS_KEY_ID=s3_server.access_key,
                AWS_SECRET_ACCESS_KEY=s3_server.secret_key, AWS_DEFAULT_REGION=s3_server.region,
                AWS_ENDPOINT_URL=s3_server.endpoint_url, ENDPOINT=s3_server.endpoint_url,
                REGION=s3_server.region)


@pytest.mark.parametrize("prefix", ["prod", ""])
def test_sqlite_from_s3_with_curl(s3_server, s3_bucket, s3_storage_params, run_module, tmp_path, prefix):
    db = two_sqlite_backups(run_module, tmp_path, s3_storage_params(s3_bucket, prefix=prefix))
    target = tmp_path / "restored.sqlite3"
    env = {**s3_env(s3_server, s3_bucket, prefix), "TARGET_PATH": target}
    run_doc(["fetch-s3-curl", "load-sqlite"], env, tmp_path)
    assert sqlite_dump(target) == sqlite_dump(db)


def test_curl_listing_follows_continuation_tokens(s3_server, s3_bucket, s3_storage_params, run_module, tmp_path):
    """More than one page of keys: the newest manifest is on the last page."""
    client = s3_server.client()
    for i in range(1005):  # older, fake objects sorted before today's backups
        client.put_object(Bucket=s3_bucket, Key="prod/app-db/2001/01/01/filler-%04d" % i, Body=b"")
    db = two_sqlite_backups(run_module, tmp_path, s3_storage_params(s3_bucket, prefix="prod"))
    target = tmp_path / "restored.sqlite3"
    env = {**s3_env(s3_server, s3_bucket, "prod"), "TARGET_PATH": target}
    run_doc(["fetch-s3-curl", "load-sqlite"], env, tmp_path)
    assert sqlite_dump(target) == sqlite_dump(db)
    listed = (tmp_path / "work" / "keys.txt").read_text().splitlines()
    assert listed == sorted(s3_server.keys(s3_bucket, "prod/app-db/")) and len(listed) > 1005


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed; its block stays untested")
def test_files_from_s3_with_aws_cli(s3_server, s3_bucket, s3_storage_params, run_module, tmp_path):
    root = tmp_path / "src"
    build_tree(root)
    dump(run_module, "app-files", dict(engine="files", path=str(root)), s3_storage_params(s3_bucket, prefix="prod"))
    target = tmp_path / "restored-files"
    env = {**s3_env(s3_server, s3_bucket, "prod"), "JOB": "app-files", "TARGET_DIR": target,
           "HOME": tmp_path}  # no ~/.aws of this machine
    run_doc(["fetch-s3-aws", "load-files"], env, tmp_path)
    assert tree(target) == tree(root)


@contextlib.contextmanager
def presigned_urls_served(s3_server):
    """moto with IAM authentication on answers presigned URLs with a 500 (KeyError HTTP_AUTHORIZATION):
    lift its authentication while the documented commands fetch them, and put it back after."""
    s3_server._set_auth("inf")
    try:
        yield
    finally:
        s3_server._set_auth("0")


def test_mariadb_from_s3_with_presigned_urls(s3_server, s3_bucket, s3_storage_params, mariadb_server, shop,
                                              run_module, tmp_path):
    source = dict(engine="mariadb", host=mariadb_server.host, port=mariadb_server.port, user=mariadb_server.user,
                  password=mariadb_server.password, database=shop)
    manifest = dump(run_module, "shop-db", source, s3_storage_params(s3_bucket, prefix="prod"), compression="lz4")
    client = s3_server.client()
    key = manifest["artifact"]
    manifest_key = key[: key.index(".")] + ".manifest.json"

    def url(k):
        return client.generate_presigned_url("get_object", Params=dict(Bucket=s3_bucket, Key=k), ExpiresIn=600)

    target = "docrestored_" + uuid.uuid4().hex[:8]
    env = dict(MANIFEST_URL=url(manifest_key), ARTIFACT_URL=url(key), TARGET_DB=target,
               MYSQL_CNF=my_cnf(mariadb_server, tmp_path))
    try:
        with presigned_urls_served(s3_server):
            run_doc(["fetch-s3-presigned", "load-mariadb"], env, tmp_path)
        assert my_digest(mariadb_server, target) == my_digest(mariadb_server, shop)
    finally:
        mariadb_server.drop_database(target)


def test_presigned_url_of_another_artifact_fails_the_checksum(s3_server, s3_bucket, s3_storage_params, run_module,
                                                              tmp_path):
    storage = s3_storage_params(s3_bucket, prefix="prod")
    two_sqlite_backups(run_module, tmp_path, storage)
    keys = sorted(s3_server.keys(s3_bucket, "prod/app-db/"))
    manifests = [k for k in keys if k.endswith(".manifest.json")]
    artifacts = [k for k in keys if k.endswith(".sqlite3.zst")]
    client = s3_server.client()

    def url(k):
        return client.generate_presigned_url("get_object", Params=dict(Bucket=s3_bucket, Key=k), ExpiresIn=600)

    script = "set -euo pipefail\n" + blocks()["helpers"] + "\n" + blocks()["fetch-s3-presigned"] + "\n"
    env = dict(os.environ, WORK=str(tmp_path / "work"), MANIFEST_URL=url(manifests[1]), ARTIFACT_URL=url(artifacts[0]))
    with presigned_urls_served(s3_server):
        proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


def test_postgresql_from_sftp(sftp_server, sftp_storage_params, pg_server, pg_source_db, run_module, tmp_path):
    source = dict(engine="postgresql", host=pg_server.host, port=pg_server.port, user=pg_server.user,
                  password=pg_server.password, database=pg_source_db)
    params = dict(sftp_storage_params, prefix="prod")
    dump(run_module, "orders-db", source, params)
    time.sleep(1.1)
    pg_server.psql("DELETE FROM items WHERE id > 1500", dbname=pg_source_db)
    dump(run_module, "orders-db", source, params)
    target = "docrestored_" + uuid.uuid4().hex[:8]
    env = dict(SFTP_HOST=sftp_server.host, SFTP_PORT=sftp_server.port, SFTP_USER=sftp_server.user,
               SFTP_PATH=params["path"], SSH_KEY=sftp_server.private_key, KNOWN_HOSTS=sftp_server.known_hosts,
               PREFIX="prod", JOB="orders-db", **pg_env(pg_server, target))
    try:
        run_doc(["fetch-sftp", "load-pg-custom"], env, tmp_path)
        assert pg_digest(pg_server, target) == pg_digest(pg_server, pg_source_db)
        assert pg_server.psql("SELECT count(*) FROM items", dbname=target).strip() == "1500"
    finally:
        pg_server.drop_database(target)


def test_manual_backup_over_sftp_is_found(sftp_server, sftp_storage_params, run_module, tmp_path):
    """A manual backup newer than the scheduled one is the newest (the second ls pattern)."""
    params = dict(sftp_storage_params, prefix="")
    db = tmp_path / "app.sqlite3"
    make_sqlite(db, 5)
    dump(run_module, "app-db", dict(engine="sqlite", path=str(db)), params)
    time.sleep(1.1)
    make_sqlite(db, 7)
    dump(run_module, "app-db", dict(engine="sqlite", path=str(db)), params, kind="manual")
    target = tmp_path / "restored.sqlite3"
    env = dict(SFTP_HOST=sftp_server.host, SFTP_PORT=sftp_server.port, SFTP_USER=sftp_server.user,
               SFTP_PATH=params["path"], SSH_KEY=sftp_server.private_key, KNOWN_HOSTS=sftp_server.known_hosts,
               PREFIX="", JOB="app-db", TARGET_PATH=target)
    run_doc(["fetch-sftp", "load-sqlite"], env, tmp_path)
    assert sqlite_dump(target) == sqlite_dump(db)
