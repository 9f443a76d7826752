"""Opt-in: the SQL Server engine against a real server given by environment variables.

    SONGMETRIX_MSSQL_HOST=sql1.example.com     (required; host or host\\instance)
    SONGMETRIX_MSSQL_PORT=1433                 (optional)
    SONGMETRIX_MSSQL_USER=sa SONGMETRIX_MSSQL_PASSWORD=...   (required: a login that may create databases)
    SONGMETRIX_MSSQL_SERVER_DIR=/var/opt/mssql/backup        (required: a folder SQL Server writes .bak files to)
    SONGMETRIX_MSSQL_LOCAL_DIR=/mnt/sqlbackup                (optional: that folder seen from here; default the same)
    SONGMETRIX_MSSQL_DATA_DIR=/var/opt/mssql/data            (optional: where the restored copy's files go)
    SONGMETRIX_MSSQL_TRUST_CERT=1                            (optional: sqlcmd -C, for a self-signed certificate)
    For url mode also (SQL Server 2022+, an HTTPS S3 endpoint SQL Server can reach):
    SONGMETRIX_MSSQL_S3_ENDPOINT_URL, SONGMETRIX_MSSQL_S3_BUCKET, SONGMETRIX_MSSQL_S3_ACCESS_KEY,
    SONGMETRIX_MSSQL_S3_SECRET_KEY, SONGMETRIX_MSSQL_S3_REGION (optional)

    .venv/bin/python -m pytest tests/optin/test_mssql_real.py

sqlcmd (mssql-tools18 or go-sqlcmd) must be on PATH. The test creates a database
songmetrix_optin_<random>, backs it up, restores it under another name, compares row counts and
drops both databases.
"""

import os
import uuid

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils.mssql_client import Sqlcmd
from ansible_collections.songmetrix.backup.plugins.module_utils.mssql_tsql import quote_name

HOST = os.environ.get("SONGMETRIX_MSSQL_HOST")
REQUIRED = ("SONGMETRIX_MSSQL_HOST", "SONGMETRIX_MSSQL_USER", "SONGMETRIX_MSSQL_PASSWORD",
            "SONGMETRIX_MSSQL_SERVER_DIR")
if not all(os.environ.get(name) for name in REQUIRED):
    pytest.skip("opt-in suite: set %s (and optionally SONGMETRIX_MSSQL_PORT, _LOCAL_DIR, _DATA_DIR, _TRUST_CERT, "
                "_S3_*) to run it against a real SQL Server" % ", ".join(REQUIRED), allow_module_level=True)

PORT = int(os.environ["SONGMETRIX_MSSQL_PORT"]) if os.environ.get("SONGMETRIX_MSSQL_PORT") else None
TRUST = os.environ.get("SONGMETRIX_MSSQL_TRUST_CERT") in ("1", "true", "yes")


def connection(database):
    return {"engine": "mssql", "host": HOST, "port": PORT, "user": os.environ["SONGMETRIX_MSSQL_USER"],
            "password": os.environ["SONGMETRIX_MSSQL_PASSWORD"], "database": database}


def options(**extra):
    opts = {"server_dir": os.environ["SONGMETRIX_MSSQL_SERVER_DIR"], "trust_server_certificate": TRUST}
    if os.environ.get("SONGMETRIX_MSSQL_LOCAL_DIR"):
        opts["local_dir"] = os.environ["SONGMETRIX_MSSQL_LOCAL_DIR"]
    opts.update(extra)
    return opts


def sql(text):
    client = Sqlcmd(connection("master"), {"trust_server_certificate": TRUST}, "test")
    return client.run(text, "test setup")


def _drop(name):
    quoted = quote_name(name)
    sql("IF DB_ID(N'%s') IS NOT NULL BEGIN ALTER DATABASE %s SET SINGLE_USER WITH ROLLBACK IMMEDIATE; "
        "DROP DATABASE %s; END;\n" % (name, quoted, quoted))


@pytest.fixture
def database():
    name = "songmetrix_optin_" + uuid.uuid4().hex[:8]
    sql("CREATE DATABASE %s;\n" % quote_name(name))
    sql("USE %s;\nCREATE TABLE dbo.t (id int PRIMARY KEY, name nvarchar(50));\n"
        "INSERT INTO dbo.t VALUES (1, N'eins'), (2, N'zwei'), (3, N'drei');\n" % quote_name(name))
    yield name
    _drop(name)


def count(name):
    out = sql("SET NOCOUNT ON;\nSELECT N'songmetrix:rows=' + CAST(COUNT(*) AS nvarchar(20)) FROM %s.dbo.t;\n"
              % quote_name(name))
    return int(out.split("songmetrix:rows=")[1].split()[0])


def test_native_round_trip(run_module, database, tmp_path):
    storage = dict(path=str(tmp_path / "store"))
    source = connection(database)
    source["mssql"] = options()
    res = run_module("dump", dict(job="optin", source=source, storage=storage))
    assert res.rc == 0, res.describe()
    assert res.result["manifest"]["server_version"].startswith("Microsoft SQL Server")
    copy = database + "_copy"
    target = connection(copy)
    target["mssql"] = options()
    if os.environ.get("SONGMETRIX_MSSQL_DATA_DIR"):
        target["mssql"]["data_dir"] = os.environ["SONGMETRIX_MSSQL_DATA_DIR"]
    try:
        res = run_module("restore", dict(storage=storage, manifest_key=res.result["manifest_key"], target=target))
        assert res.rc == 0, res.describe()
        assert count(copy) == 3
    finally:
        _drop(copy)


@pytest.mark.skipif(not os.environ.get("SONGMETRIX_MSSQL_S3_BUCKET"),
                    reason="url mode: set SONGMETRIX_MSSQL_S3_ENDPOINT_URL, _S3_BUCKET, _S3_ACCESS_KEY, _S3_SECRET_KEY")
def test_url_round_trip(run_module, database):
    storage = dict(type="s3", bucket=os.environ["SONGMETRIX_MSSQL_S3_BUCKET"],
                   endpoint_url=os.environ.get("SONGMETRIX_MSSQL_S3_ENDPOINT_URL"),
                   access_key=os.environ["SONGMETRIX_MSSQL_S3_ACCESS_KEY"],
                   secret_key=os.environ["SONGMETRIX_MSSQL_S3_SECRET_KEY"],
                   region=os.environ.get("SONGMETRIX_MSSQL_S3_REGION"), prefix="songmetrix-optin")
    source = connection(database)
    source["mssql"] = {"mode": "url", "stripes": 2, "trust_server_certificate": TRUST}
    res = run_module("dump", dict(job="optin", source=source, storage=storage))
    assert res.rc == 0, res.describe()
    assert len(res.result["manifest"]["attachments"]) == 1
    copy = database + "_urlcopy"
    target = connection(copy)
    target["mssql"] = {"trust_server_certificate": TRUST}
    if os.environ.get("SONGMETRIX_MSSQL_DATA_DIR"):
        target["mssql"]["data_dir"] = os.environ["SONGMETRIX_MSSQL_DATA_DIR"]
    try:
        res = run_module("restore", dict(storage=storage, manifest_key=res.result["manifest_key"], target=target))
        assert res.rc == 0, res.describe()
        assert count(copy) == 3
    finally:
        _drop(copy)
