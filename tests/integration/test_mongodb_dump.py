"""engine: mongodb for the dump module, against the fake mongodump in tests/fakes."""

import json
import os
import time

import pytest

from engine_helpers import check_artifact_matches_manifest, cmdline, start_module, stored_files
from mongodb_fakes import (
    MONGODUMP,
    PASSWORD,
    PASSWORD_IN_URI,
    FakeMongo,
    assert_configs_gone,
    assert_no_secret,
    decompressed,
    source,
)

URI = "mongodb://backup:%s@127.0.0.1:27018/" % PASSWORD_IN_URI


@pytest.fixture
def fake(tmp_path):
    return FakeMongo(tmp_path)


def dump(run_module, fake, storage_dir, check_mode=False, env=None, **source_extra):
    return run_module("dump", dict(job="mongo", source=source(**source_extra), storage=dict(path=str(storage_dir))),
                      check_mode=check_mode, env=fake.env(**(env or {})))


def no_backup_stored(storage_dir):
    names = stored_files(str(storage_dir))
    assert not [n for n in names if n.endswith(".manifest.json") or ".archive" in n], names


def test_dump_streams_the_archive_with_the_uri_in_a_0600_config_file(run_module, fake, storage_dir):
    res = dump(run_module, fake, storage_dir, mongodb=dict(auth_database="admin", read_preference="secondary"))
    assert not res.failed, res.describe()
    runs = fake.entries("mongodump")
    assert len(runs) == 1
    run = runs[0]
    assert run["argv"][1].startswith("--config=")
    assert run["argv"] == [MONGODUMP, run["argv"][1], "--archive", "--authenticationDatabase=admin",
                           "--readPreference=secondary", "--db=shop"]
    assert run["cmdline"][-len(run["argv"]) + 1:] == run["argv"][1:]  # what /proc showed of the running child
    assert run["uri"] == URI
    assert run["config"] == 'uri: "%s"\n' % URI
    assert_configs_gone(fake)
    assert_no_secret(fake, res.result)
    assert res.result["command"] == [MONGODUMP, "--config=<0600 config file>", "--archive",
                                     "--authenticationDatabase=admin", "--readPreference=secondary", "--db=shop"]

    path, manifest = check_artifact_matches_manifest(str(storage_dir), res.result)
    assert path.endswith(".archive.zst")
    assert manifest["engine"] == "mongodb" and manifest["format"] == "archive" and manifest["database"] == "shop"
    assert manifest["tool_version"] == "mongodump version: 100.10.0"
    assert manifest["server_version"] == "7.0.14"  # from the archive's own header
    assert manifest["table_counts"] == {"shop.empty": 0, "shop.items": 3, "shop.users": 5}
    raw = decompressed(path)
    assert raw == fake.archive("--db=shop")  # no --gzip: the stored bytes are the archive, compressed by us
    assert manifest["raw_size"] == len(raw)


def test_uri_option_oplog_and_whole_server(run_module, fake, storage_dir):
    uri = "mongodb://admin:%s@db1:27017,db2:27017/?replicaSet=rs0&authSource=admin" % PASSWORD_IN_URI
    src = dict(engine="mongodb", mongodb=dict(uri=uri, oplog=True))
    res = run_module("dump", dict(job="mongo", source=src, storage=dict(path=str(storage_dir)), compression="gzip"),
                     env=fake.env())
    assert not res.failed, res.describe()
    run = fake.entries("mongodump")[0]
    assert run["argv"] == [MONGODUMP, run["argv"][1], "--archive", "--oplog"]
    assert run["uri"] == uri
    assert_configs_gone(fake)
    assert_no_secret(fake, res.result)
    assert uri not in json.dumps(res.result)
    path, manifest = check_artifact_matches_manifest(str(storage_dir), res.result)
    assert path.endswith(".archive.gz") and manifest["database"] is None
    # the oplog's entries are not a collection: left out of the counts
    assert manifest["table_counts"] == {"other.x": 1, "shop.empty": 0, "shop.items": 3, "shop.users": 5}
    assert decompressed(path) == fake.archive("--oplog")


def test_include_maps_to_collection_and_exclude_to_exclude_collection(run_module, fake, storage_dir):
    res = dump(run_module, fake, storage_dir, include=["users"])
    assert not res.failed, res.describe()
    res2 = run_module("dump", dict(job="mongo2", source=source(exclude=["users", "empty"]),
                                   storage=dict(path=str(storage_dir))), env=fake.env())
    assert not res2.failed, res2.describe()
    first, second = fake.entries("mongodump")
    assert first["argv"][2:] == ["--archive", "--db=shop", "--collection=users"]
    assert second["argv"][2:] == ["--archive", "--db=shop", "--excludeCollection=users", "--excludeCollection=empty"]
    assert res.result["manifest"]["table_counts"] == {"shop.users": 5}
    assert res2.result["manifest"]["table_counts"] == {"shop.items": 3}


def test_row_counts_off(run_module, fake, storage_dir):
    res = run_module("dump", dict(job="mongo", source=source(), storage=dict(path=str(storage_dir)),
                                  row_counts=False), env=fake.env())
    assert not res.failed, res.describe()
    assert res.result["manifest"]["table_counts"] is None
    assert res.result["manifest"]["server_version"] == "7.0.14"  # the header is read either way


@pytest.mark.parametrize("extra, message", [
    (dict(include=["items", "users"]), "takes one collection"),
    (dict(include=["items"], exclude=["users"]), "cannot be combined"),
    (dict(database=None, exclude=["users"]), "name collections of source.database"),
    (dict(mongodb=dict(oplog=True)), "--oplog mode only supported on full dumps"),
    (dict(mongodb=dict(uri="mongodb://a:b@h/")), "cannot be combined with source.mongodb.uri"),
    (dict(mongodb=dict(uri="http://h/"), host=None, port=None, user=None, password=None), "must start with"),
    (dict(ssl_mode="prefer"), "no opportunistic TLS"),
    (dict(format="plain"), "not used by engine mongodb"),
    (dict(include=["--out=/tmp"]), "not a collection name"),
])
def test_refused_before_anything_runs(run_module, fake, storage_dir, extra, message):
    res = dump(run_module, fake, storage_dir, **extra)
    assert res.failed and message in res.msg, res.describe()
    assert fake.entries() == []
    assert stored_files(str(storage_dir)) == []
    assert_no_secret(fake, res.result)


def test_authentication_failure_fails_with_the_tools_message(run_module, fake, storage_dir):
    res = dump(run_module, fake, storage_dir, password="wrong-password")
    assert res.failed
    assert "mongodump exited with status 1" in res.msg and "(AuthenticationFailed) Authentication failed" in res.msg
    assert "wrong-password" not in json.dumps(res.result)
    no_backup_stored(storage_dir)
    assert_configs_gone(fake)


def test_died_midway_leaves_no_backup(run_module, fake, storage_dir):
    res = dump(run_module, fake, storage_dir, env=dict(FAKE_MODE="die_midway"))
    assert res.failed and "incomplete read of message header" in res.msg, res.describe()
    no_backup_stored(storage_dir)
    assert_configs_gone(fake)


def test_failure_printed_with_exit_status_0_is_caught(run_module, fake, storage_dir):
    res = dump(run_module, fake, storage_dir, env=dict(FAKE_MODE="exit0_failed"))
    assert res.failed and "mongodump reported a failure" in res.msg and "not authorized on shop" in res.msg, \
        res.describe()
    no_backup_stored(storage_dir)


def test_missing_collection_exits_0_and_fails_the_task(run_module, fake, storage_dir):
    res = dump(run_module, fake, storage_dir, include=["nope"])
    assert res.failed and "found no collection nope in database shop" in res.msg, res.describe()
    no_backup_stored(storage_dir)


def test_check_mode_runs_no_dump(run_module, fake, storage_dir):
    res = dump(run_module, fake, storage_dir, check_mode=True)
    assert not res.failed and res.result["changed"], res.describe()
    assert fake.entries() == []  # only `mongodump --version` ran, which connects nowhere
    assert stored_files(str(storage_dir)) == []
    assert res.result["manifest"]["engine"] == "mongodb" and res.result["manifest"]["format"] == "archive"
    assert res.result["command"][1] == "--config=<0600 config file>"
    assert_no_secret(fake, res.result)


def test_running_child_has_no_secret_in_proc(tmp_path, fake, storage_dir):
    """/proc/<pid>/cmdline and environ of the running mongodump hold no secret; its config file is 0600."""
    args = dict(job="mongo", source=source(), storage=dict(path=str(storage_dir)), spool_dir=str(tmp_path))
    env_backup = dict(os.environ)
    os.environ.update(fake.env(FAKE_MODE="sleep", FAKE_SLEEP="3"))
    try:
        proc = start_module("dump", args, tmp_path)
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    child = None
    deadline = time.time() + 30
    while child is None and time.time() < deadline:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != proc.pid:
                try:
                    argv = cmdline(int(entry))
                except OSError:
                    continue
                if any(arg.endswith(b"/fakes/mongodump") for arg in argv) and b"--archive" in argv:
                    child = int(entry)
                    break
        time.sleep(0.05)
    assert child is not None
    argv = cmdline(child)
    with open("/proc/%d/environ" % child, "rb") as handle:
        # the fake server's own setting aside (FAKE_MONGO_PASSWORD is what the fake checks the URI against)
        environ = b"\0".join(v for v in handle.read().split(b"\0") if not v.startswith(b"FAKE_MONGO_PASSWORD="))
    config = [a.decode()[len("--config="):] for a in argv if a.startswith(b"--config=")][0]
    assert os.stat(config).st_mode & 0o777 == 0o600
    assert os.path.dirname(config) == str(tmp_path)  # in spool_dir
    for secret in (PASSWORD, PASSWORD_IN_URI):
        assert secret.encode() not in b"\0".join(argv) and secret.encode() not in environ
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert not os.path.exists(config)


def test_s3_round_trip(run_module, fake, s3_bucket, s3_storage_params):
    storage = s3_storage_params(s3_bucket)
    res = run_module("dump", dict(job="mongo", source=source(), storage=storage), env=fake.env())
    assert not res.failed, res.describe()
    restore = run_module("restore", dict(manifest_key=res.result["manifest_key"], storage=storage,
                                         target=dict(engine="mongodb", host="127.0.0.1", port=27018, user="backup",
                                                     password=PASSWORD, database="shop")),
                         env=fake.env(FAKE_MONGO_DATA="{}"))
    assert not restore.failed, restore.describe()
    with open(fake.restored, "rb") as handle:
        assert handle.read() == fake.archive("--db=shop")
    assert restore.result["sha256"] == res.result["manifest"]["sha256"]
    assert_configs_gone(fake)
    assert_no_secret(fake, restore.result)
