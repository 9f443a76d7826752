"""engine: mongodb for the restore module, against the fake mongodump/mongorestore pair in tests/fakes."""

import json
import os

import pytest

from mongodb_fakes import (
    MONGODUMP,
    MONGORESTORE,
    PASSWORD_IN_URI,
    SHOP,
    FakeMongo,
    assert_configs_gone,
    assert_no_secret,
    source,
    target,
)

URI = "mongodb://backup:%s@127.0.0.1:27018/" % PASSWORD_IN_URI


@pytest.fixture
def fake(tmp_path):
    return FakeMongo(tmp_path)


@pytest.fixture
def backup(run_module, tmp_path, storage_dir):
    """A mongodb backup of database shop in storage_dir; the value is the dump module's result."""
    res = run_module("dump", dict(job="mongo", source=source(), storage=dict(path=str(storage_dir))),
                     env=FakeMongo(tmp_path).env(FAKE_LOG=os.devnull))
    assert not res.failed, res.describe()
    return res.result


def restore(run_module, fake, storage_dir, backup, target_data=None, check_mode=False, env=None, tgt=None, **opts):
    """Restore ``backup``; the fake target server holds ``target_data`` (empty by default)."""
    args = dict(manifest_key=backup["manifest_key"], storage=dict(path=str(storage_dir)), target=tgt or target())
    args.update(opts)
    fake.data = target_data or {}
    return run_module("restore", args, check_mode=check_mode, env=fake.env(**(env or {})))


def test_round_trip_into_an_empty_database(run_module, fake, storage_dir, backup):
    res = restore(run_module, fake, storage_dir, backup, target_data={"other": {"x": 1}})
    assert not res.failed, res.describe()
    probe, load = fake.entries()
    # emptiness: the target database's collection list read from mongodump's archive prelude
    assert probe["tool"] == "mongodump"
    assert probe["argv"] == [MONGODUMP, probe["argv"][1], "--archive", "--db=shop"]
    assert load["tool"] == "mongorestore"
    assert load["argv"] == [MONGORESTORE, load["argv"][1], "--archive", "--nsInclude=shop.*"]
    assert probe["uri"] == load["uri"] == URI
    with open(fake.restored, "rb") as handle:
        assert handle.read() == fake.archive("--db=shop", FAKE_MONGO_DATA=json.dumps(SHOP))  # byte for byte
    assert res.result["actions"] == ["restore database shop into the empty database 127.0.0.1:27018/shop"]
    assert res.result["command"] == [MONGORESTORE, "--config=<0600 config file>", "--archive", "--nsInclude=shop.*"]
    assert res.result["target"] == {"engine": "mongodb", "host": "127.0.0.1", "port": 27018, "user": "backup",
                                    "database": "shop"}
    assert res.result["sha256"] == backup["manifest"]["sha256"]
    assert_configs_gone(fake)
    assert_no_secret(fake, res.result)


def test_non_empty_target_is_refused(run_module, fake, storage_dir, backup):
    res = restore(run_module, fake, storage_dir, backup, target_data={"shop": {"orders": 2, "system.views": 1}})
    assert res.failed and "target database 127.0.0.1:27018/shop is not empty (1 collections or views, such as " \
        "orders): set clean or force" in res.msg, res.describe()
    assert [e["tool"] for e in fake.entries()] == ["mongodump"]  # no mongorestore ran
    assert not os.path.exists(fake.restored)
    assert_configs_gone(fake)


def test_clean_drops_and_skips_the_emptiness_check(run_module, fake, storage_dir, backup):
    res = restore(run_module, fake, storage_dir, backup, target_data={"shop": {"items": 7}}, clean=True)
    assert not res.failed, res.describe()
    (load,) = fake.entries()
    assert load["argv"] == [MONGORESTORE, load["argv"][1], "--archive", "--drop", "--nsInclude=shop.*"]
    assert "mongorestore --drop" in res.result["actions"][0]


def test_force_restores_without_drop(run_module, fake, storage_dir, backup):
    res = restore(run_module, fake, storage_dir, backup, target_data={"shop": {"items": 7}}, force=True)
    assert not res.failed, res.describe()
    (load,) = fake.entries()
    assert "--drop" not in load["argv"]


def test_into_another_database_name_and_options(run_module, fake, storage_dir, backup):
    tgt = target(database="shop_copy", mongodb=dict(auth_database="admin", oplog_replay=True))
    res = restore(run_module, fake, storage_dir, backup, tgt=tgt)
    assert not res.failed, res.describe()
    probe, load = fake.entries()
    assert probe["argv"][2:] == ["--archive", "--authenticationDatabase=admin", "--db=shop_copy"]
    assert load["argv"][2:] == ["--archive", "--authenticationDatabase=admin", "--oplogReplay",
                                "--nsInclude=shop.*", "--nsFrom=shop.*", "--nsTo=shop_copy.*"]


def test_target_uri_option(run_module, fake, storage_dir, backup):
    uri = "mongodb+srv://backup:%s@cluster0.example.net/?retryWrites=true" % PASSWORD_IN_URI
    res = restore(run_module, fake, storage_dir, backup, tgt=dict(engine="mongodb", mongodb=dict(uri=uri)), force=True)
    assert not res.failed, res.describe()
    assert fake.entries()[0]["uri"] == uri
    assert res.result["target"]["host"] == "cluster0.example.net"
    assert_no_secret(fake, res.result)


def test_failed_documents_fail_the_task_though_mongorestore_exits_0(run_module, fake, storage_dir, backup):
    res = restore(run_module, fake, storage_dir, backup, env=dict(FAKE_MODE="restore_dup"))
    assert res.failed and "mongorestore could not restore 1 document(s) (7 restored)" in res.msg, res.describe()
    assert "E11000 duplicate key error" in res.msg
    assert_configs_gone(fake)


def test_authentication_failure(run_module, fake, storage_dir, backup):
    res = restore(run_module, fake, storage_dir, backup, force=True, env=dict(FAKE_MODE="restore_auth_fail"))
    assert res.failed and "mongorestore exited with status 1" in res.msg, res.describe()
    assert "(AuthenticationFailed) Authentication failed" in res.msg
    assert_configs_gone(fake)
    assert_no_secret(fake, res.result)


def test_probe_failure_names_the_way_out(run_module, fake, storage_dir, backup):
    res = restore(run_module, fake, storage_dir, backup, env=dict(FAKE_MODE="auth_fail"))
    assert res.failed and "checking that target database 127.0.0.1:27018/shop is empty failed" in res.msg
    assert "Authentication failed" in res.msg and "set clean or force to skip it" in res.msg
    assert [e["tool"] for e in fake.entries()] == ["mongodump"]


def test_check_mode_restores_nothing(run_module, fake, storage_dir, backup):
    res = restore(run_module, fake, storage_dir, backup, check_mode=True, clean=True)
    assert not res.failed, res.describe()
    assert fake.entries() == []
    assert not os.path.exists(fake.restored)
    assert res.result["actions"] and "--drop" in res.result["command"]
    assert res.result["sha256"] == backup["manifest"]["sha256"]  # the artifact was read and checked


@pytest.mark.parametrize("opts, message", [
    (dict(scratch=True), "scratch restore tests are not available for mongodb"),
    (dict(tables=["items"]), "tables is not available for mongodb"),
    (dict(tgt=target(path="/tmp/x")), "target.path is not used by engine mongodb"),
])
def test_refused(run_module, fake, storage_dir, backup, opts, message):
    res = restore(run_module, fake, storage_dir, backup, **opts)
    assert res.failed and message in res.msg, res.describe()
    assert fake.entries() == []


def test_whole_server_backup_needs_clean_or_force(run_module, fake, tmp_path, storage_dir):
    src = dict(engine="mongodb", mongodb=dict(uri="mongodb://127.0.0.1:27018/"))
    dumped = run_module("dump", dict(job="all", source=src, storage=dict(path=str(storage_dir))),
                        env=fake.env(FAKE_MONGO_PASSWORD=""))
    assert not dumped.failed, dumped.describe()
    res = restore(run_module, fake, storage_dir, dumped.result, tgt=dict(engine="mongodb"), env=dict(
        FAKE_MONGO_PASSWORD=""))
    assert res.failed and "holds the whole server" in res.msg
    res = restore(run_module, fake, storage_dir, dumped.result, tgt=dict(engine="mongodb", database="x"))
    assert res.failed and "leave target.database unset" in res.msg
    res = restore(run_module, fake, storage_dir, dumped.result, tgt=dict(engine="mongodb"), clean=True,
                  env=dict(FAKE_MONGO_PASSWORD=""))
    assert not res.failed, res.describe()
    load = fake.entries("mongorestore")[-1]
    assert load["argv"][2:] == ["--archive", "--drop"]
