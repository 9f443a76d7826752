"""songmetrix.backup.healthcheck against real servers: PostgreSQL, MariaDB, SQLite, moto S3, sshd SFTP."""

import json
import os
import sqlite3
import stat

import pytest

from tests.servers import free_port

SECRET = "Wr0ng-pass-9c1e7d-never-print"


def pg_source(pg, database, **extra):
    source = dict(engine="postgresql", host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                  database=database)
    source.update(extra)
    return source


def my_source(server, database, **extra):
    source = dict(engine="mariadb", host=server.host, port=server.port, user=server.user, password=server.password,
                  database=database)
    source.update(extra)
    return source


@pytest.fixture
def sqlite_db(tmp_path):
    path = tmp_path / "app.sqlite3"
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 100,)] * 50)
    conn.commit()
    conn.close()
    return path


def all_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def healthy(res):
    assert res.rc == 0, res.describe()
    return res.result


# -- sources --------------------------------------------------------------------------------------

def test_postgresql_healthy(run_module, pg_server, pg_database):
    pg_server.psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);", dbname=pg_database)
    result = healthy(run_module("healthcheck", {"source": pg_source(pg_server, pg_database)}))
    source = result["source"]
    assert source["status"] == "healthy" and result["status"] == "healthy", result
    assert source["reachable"] is True
    assert source["server_version"].split(".")[0] == pg_server.version.split(".")[0]
    assert source["database_size"] > 0
    assert 0 < source["latency_ms"] < 10000
    assert result["changed"] is False
    assert result["storage"] is None


def test_supabase_healthy(run_module, pg_server, pg_database):
    # Supabase is PostgreSQL with presets: the same probe (it once failed with KeyError: 'supabase').
    source = pg_source(pg_server, pg_database, engine="supabase", ssl_mode="disable")
    result = healthy(run_module("healthcheck", {"source": source}))
    assert result["source"]["status"] == "healthy" and result["source"]["database_size"] > 0, result


def test_mariadb_healthy(run_module, mariadb_server, mariadb_database):
    mariadb_server.sql("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(100)); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
                       database=mariadb_database)
    result = healthy(run_module("healthcheck", {"source": my_source(mariadb_server, mariadb_database)}))
    source = result["source"]
    assert source["status"] == "healthy", result
    assert "MariaDB" in source["server_version"] or source["server_version"][0].isdigit()
    assert source["database_size"] > 0
    assert source["latency_ms"] > 0


def test_sqlite_healthy(run_module, sqlite_db):
    result = healthy(run_module("healthcheck", {"source": {"engine": "sqlite", "path": str(sqlite_db)}}))
    source = result["source"]
    assert source["status"] == "healthy"
    assert source["server_version"] == sqlite3.sqlite_version
    assert source["database_size"] == sqlite_db.stat().st_size > 0


def test_files_size(run_module, tmp_path):
    root = tmp_path / "files"
    (root / "a").mkdir(parents=True)
    (root / "a" / "one").write_bytes(b"x" * 1000)
    (root / "two").write_bytes(b"y" * 24)
    result = healthy(run_module("healthcheck", {"source": {"engine": "files", "path": str(root)}}))
    assert result["source"]["status"] == "healthy"
    assert result["source"]["database_size"] == 1024


def test_wrong_password_is_critical_without_the_password(run_module, pg_server, pg_database, mariadb_server,
                                                         mariadb_database):
    for source in (pg_source(pg_server, pg_database, password=SECRET),
                   my_source(mariadb_server, mariadb_database, password=SECRET)):
        res = run_module("healthcheck", {"source": source})
        result = healthy(res)  # a broken source is the result, not a failed task
        assert result["status"] == "critical", result
        assert result["source"]["reachable"] is False
        msg = result["source"]["msg"]
        assert "cannot connect" in msg and ("password" in msg.lower() or "denied" in msg.lower()), msg
        assert SECRET not in res.stdout and SECRET not in res.stderr


def test_closed_port_is_critical(run_module, pg_server, mariadb_server):
    port = free_port()
    for source in (dict(engine="postgresql", host="127.0.0.1", port=port, user="u", password="p", database="d",
                        connect_timeout=3),
                   dict(engine="mariadb", host="127.0.0.1", port=port, user="u", password="p", database="d",
                        connect_timeout=3)):
        result = healthy(run_module("healthcheck", {"source": source}))
        assert result["status"] == "critical"
        assert result["source"]["reachable"] is False
        assert str(port) in result["source"]["msg"] or "onnect" in result["source"]["msg"], result


def test_missing_sqlite_is_critical(run_module, tmp_path):
    result = healthy(run_module("healthcheck", {"source": {"engine": "sqlite", "path": str(tmp_path / "nope.db")}}))
    assert result["status"] == "critical"
    assert "does not exist" in result["source"]["msg"]


def test_thresholds_give_warning_and_critical(run_module, pg_server, pg_database, sqlite_db):
    result = healthy(run_module("healthcheck", {"source": pg_source(pg_server, pg_database),
                                                "thresholds": {"latency_warning_ms": 0.001}}))
    assert result["source"]["status"] == "warning" and result["status"] == "warning", result
    assert "latency" in result["source"]["msg"]
    assert result["consecutive_failures"] == 0  # a warning is not a failure

    result = healthy(run_module("healthcheck", {"source": {"engine": "sqlite", "path": str(sqlite_db)},
                                                "thresholds": {"size_warning": "1K", "size_critical": "1G"}}))
    assert result["source"]["status"] == "warning"
    assert "database size" in result["source"]["msg"]
    result = healthy(run_module("healthcheck", {"source": {"engine": "sqlite", "path": str(sqlite_db)},
                                                "thresholds": {"size_critical": 1024}}))
    assert result["source"]["status"] == "critical"

    res = run_module("healthcheck", {"source": {"engine": "sqlite", "path": str(sqlite_db)},
                                     "thresholds": {"size_warning": "2G", "size_critical": "1G"}})
    assert res.failed and "size_warning must be below" in res.msg


# -- storages -------------------------------------------------------------------------------------

def test_local_probe_leaves_nothing(run_module, storage_dir):
    (storage_dir / "p" / "job").mkdir(parents=True)
    (storage_dir / "p" / "job" / "keep.dump").write_bytes(b"backup")
    result = healthy(run_module("healthcheck", {"storage": {"path": str(storage_dir), "prefix": "p"}}))
    storage = result["storage"]
    assert storage["status"] == "healthy", result
    assert (storage["write_ok"], storage["read_ok"], storage["delete_ok"]) == (True, True, True)
    assert storage["probe_key"].startswith("p/.healthcheck/")
    assert storage["free_bytes"] > 0 and storage["total_bytes"] >= storage["free_bytes"]
    assert all_files(storage_dir) == ["p/job/keep.dump"]
    assert not (storage_dir / "p" / ".healthcheck").exists()


def test_local_free_space_thresholds(run_module, storage_dir):
    result = healthy(run_module("healthcheck", {"storage": {"path": str(storage_dir)},
                                                "thresholds": {"free_warning": "1024T"}}))
    assert result["storage"]["status"] == "warning"
    assert "free space" in result["storage"]["msg"]


def test_unwritable_local_storage_names_the_step(run_module, storage_dir):
    # The prefix folder is a file: the write step fails (root may write anywhere, so no chmod here).
    (storage_dir / "p").write_bytes(b"not a folder")
    result = healthy(run_module("healthcheck", {"storage": {"path": str(storage_dir), "prefix": "p"}}))
    storage = result["storage"]
    assert result["status"] == "critical"
    assert storage["failed_step"] == "write" and storage["write_ok"] is False, storage
    assert storage["read_ok"] is None
    assert storage["msg"].startswith("write failed:"), storage
    assert all_files(storage_dir) == ["p"]


def test_s3_probe_leaves_nothing(run_module, s3_server, s3_bucket, s3_storage_params):
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="prod/job/keep.dump", Body=b"backup")
    res = run_module("healthcheck", {"storage": s3_storage_params(s3_bucket, prefix="prod")})
    result = healthy(res)
    storage = result["storage"]
    assert storage["status"] == "healthy", result
    assert (storage["write_ok"], storage["read_ok"], storage["delete_ok"]) == (True, True, True)
    assert storage["versioning"] == "disabled"
    assert storage["object_lock"] == "disabled"
    assert storage["free_bytes"] is None
    assert s3_server.keys(s3_bucket) == ["prod/job/keep.dump"]
    assert s3_server.secret_key not in res.stdout


def test_s3_versioned_bucket_keeps_no_version(run_module, s3_server, s3_bucket, s3_storage_params):
    s3 = s3_server.client()
    s3.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    result = healthy(run_module("healthcheck", {"storage": s3_storage_params(s3_bucket)}))
    storage = result["storage"]
    assert storage["status"] == "healthy", result
    assert storage["versioning"] == "enabled"
    versions = s3.list_object_versions(Bucket=s3_bucket)
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == [], versions


def test_s3_object_lock_bucket_reported_and_no_probe(run_module, s3_server, s3_storage_params):
    bucket = s3_server.create_bucket(object_lock=True)
    try:
        s3 = s3_server.client()
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
        result = healthy(run_module("healthcheck", {"storage": s3_storage_params(bucket)}))
        storage = result["storage"]
        assert storage["object_lock"] == "enabled", result
        assert storage["object_lock_default"] == {"mode": "GOVERNANCE", "days": 1}
        assert storage["versioning"] == "enabled"
        assert storage["write_ok"] is None and any("probe skipped" in n for n in storage["notes"])
        assert s3.list_object_versions(Bucket=bucket).get("Versions", []) == []
    finally:
        s3_server.delete_bucket(bucket)


def test_s3_access_denied_settings_are_unknown(run_module, s3_server, s3_bucket, s3_storage_params):
    access_key, secret_key = s3_server.create_credentials(
        ["s3:ListBucket", "s3:HeadBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"])  # moto: HeadBucket
    params = s3_storage_params(s3_bucket, access_key=access_key, secret_key=secret_key)
    result = healthy(run_module("healthcheck", {"storage": params}))
    storage = result["storage"]
    assert storage["versioning"] == "unknown", result
    assert any("access denied to GetBucketVersioning" in note for note in storage["notes"])
    # moto answers "no configuration" before it checks the permission; AWS says AccessDenied (-> unknown)
    assert storage["object_lock"] in ("unknown", "disabled")
    assert storage["status"] == "healthy"
    assert s3_server.keys(s3_bucket) == []


def test_s3_missing_bucket_is_critical(run_module, s3_storage_params):
    result = healthy(run_module("healthcheck", {"storage": s3_storage_params("no-such-bucket-hc")}))
    assert result["status"] == "critical"
    assert result["storage"]["failed_step"] == "connect"
    assert "does not exist" in result["storage"]["msg"]


def test_sftp_probe_leaves_nothing(run_module, sftp_server, sftp_storage_params):
    result = healthy(run_module("healthcheck", {"storage": dict(sftp_storage_params, prefix="site")}))
    storage = result["storage"]
    assert storage["status"] == "healthy", result
    assert (storage["write_ok"], storage["read_ok"], storage["delete_ok"]) == (True, True, True)
    # OpenSSH answers statvfs@openssh.com; the storage folder does not exist yet: its parent is asked
    assert storage["free_bytes"] > 0 and storage["total_bytes"] >= storage["free_bytes"], storage
    root = sftp_storage_params["path"]
    left = [os.path.join(d, f) for d, _s, files in os.walk(root) for f in files]
    assert left == []
    assert not os.path.exists(os.path.join(root, "site", ".healthcheck"))


# -- state, alerts, check mode --------------------------------------------------------------------

def test_alert_after_two_failures_then_recovered(run_module, tmp_path, sqlite_db):
    state_dir = tmp_path / "state"
    missing = {"engine": "sqlite", "path": str(tmp_path / "gone.sqlite3")}
    args = {"name": "orders", "state_dir": str(state_dir), "alert_after": 2}

    first = healthy(run_module("healthcheck", dict(args, source=missing)))
    assert (first["consecutive_failures"], first["alert"], first["changed"]) == (1, False, True)
    state_file = state_dir / "healthcheck-orders.json"
    assert first["state_file"] == str(state_file)
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert json.loads(state_file.read_text())["consecutive_failures"] == 1

    second = healthy(run_module("healthcheck", dict(args, source=missing)))
    assert (second["consecutive_failures"], second["alert"]) == (2, True)
    third = healthy(run_module("healthcheck", dict(args, source=missing)))
    assert (third["consecutive_failures"], third["alert"]) == (3, False)

    good = dict(args, source={"engine": "sqlite", "path": str(sqlite_db)})
    back = healthy(run_module("healthcheck", good))
    assert (back["consecutive_failures"], back["alert"], back["recovered"], back["changed"]) == (0, False, True, True)
    again = healthy(run_module("healthcheck", good))
    assert (again["recovered"], again["changed"]) == (False, False)
    assert json.loads(state_file.read_text())["consecutive_failures"] == 0
    assert [p.name for p in state_dir.iterdir()] == ["healthcheck-orders.json"]  # no temp file left


def test_alert_after_needs_state_dir(run_module, sqlite_db):
    res = run_module("healthcheck", {"source": {"engine": "sqlite", "path": str(sqlite_db)}, "alert_after": 2})
    assert res.failed and "needs state_dir" in res.msg


def test_check_mode_writes_no_probe_and_no_state(run_module, tmp_path, storage_dir):
    state_dir = tmp_path / "state"
    args = {"name": "j", "state_dir": str(state_dir),
            "source": {"engine": "sqlite", "path": str(tmp_path / "gone.sqlite3")},
            "storage": {"path": str(storage_dir), "prefix": "p"}}
    result = healthy(run_module("healthcheck", args, check_mode=True))
    assert result["status"] == "critical"
    assert result["consecutive_failures"] == 1 and result["alert"] is True
    assert result["changed"] is True  # would be rewritten
    storage = result["storage"]
    assert storage["write_ok"] is None and storage["reachable"] is True
    assert any("check mode" in n for n in storage["notes"])
    assert not state_dir.exists()
    assert all_files(storage_dir) == [] and list(storage_dir.iterdir()) == []
