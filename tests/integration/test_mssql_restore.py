"""engine mssql restore, native mode: the stored .bak streamed to a temporary file, RESTORE DATABASE through sqlcmd."""

import json
import re

import pytest
from mssql_support import PASSWORD, SERVER_DIR, FakeSqlcmd, assert_no_secret, mssql_source

TARGET = "copy]of 'shop"
SERVER_DIR_SQL = SERVER_DIR.replace("'", "''")


@pytest.fixture
def fake_sqlcmd(tmp_path):
    return FakeSqlcmd(tmp_path)


@pytest.fixture
def backup(run_module, fake_sqlcmd, tmp_path):
    """One native backup of 'shop' (zstd), taken through the fake; (storage dir, manifest key, .bak sha256)."""
    storage = tmp_path / "store"
    res = run_module("dump", dict(job="shop", source=mssql_source(local_dir=str(fake_sqlcmd.share)),
                                  storage=dict(path=str(storage))), env=fake_sqlcmd.env)
    assert res.rc == 0, res.describe()
    original = fake_sqlcmd.events("wrote")[0]["sha256"]
    fake_sqlcmd.log.unlink()
    return storage, res.result["manifest_key"], original


def restore(run_module, fake, storage, key, check_mode=False, force=False, database=TARGET, **mssql):
    opts = {"server_dir": SERVER_DIR, "local_dir": str(fake.share)}
    opts.update(mssql)
    target = {"engine": "mssql", "host": "db.example", "port": 1433, "user": "sa", "password": PASSWORD,
              "database": database, "mssql": opts}
    return run_module("restore", dict(storage=dict(path=str(storage)), manifest_key=key, target=target, force=force),
                      check_mode=check_mode, env=fake.env)


def restore_call(fake):
    return [c for c in fake.statements() if "RESTORE DATABASE" in c["sql"]]


def test_round_trip_with_filelistonly_moves(run_module, fake_sqlcmd, backup):
    storage, key, original = backup
    res = restore(run_module, fake_sqlcmd, storage, key, data_dir="/var/opt/mssql/data", log_dir="/var/opt/mssql/log")
    assert res.rc == 0, res.describe()
    probe, filelist, restored = fake_sqlcmd.statements()
    assert "DB_ID(N'copy]of ''shop')" in probe["sql"]
    name = re.search(r"FROM DISK = N'%s/(songmetrix-restore-copy_of__shop-\d{8}T\d{6}Z-[0-9a-f]{8}\.bak)'"
                     % re.escape(SERVER_DIR_SQL), filelist["sql"]).group(1)
    disk = "N'%s/%s'" % (SERVER_DIR_SQL, name)
    assert filelist["sql"] == "SET NOCOUNT ON;\nRESTORE FILELISTONLY FROM DISK = %s;\n" % disk
    assert filelist["argv"][-4:-2] == ["-s", "|"]
    assert restored["sql"] == (
        "SET NOCOUNT ON;\nRESTORE DATABASE [copy]]of 'shop] FROM DISK = %s WITH "
        "MOVE N'shop' TO N'/var/opt/mssql/data/copy_of__shop_shop.mdf', "
        "MOVE N'shop_log' TO N'/var/opt/mssql/log/copy_of__shop_shop_log.ldf', CHECKSUM, RECOVERY;\n" % disk)
    # SQL Server read exactly the .bak it had written at backup time.
    [event] = fake_sqlcmd.events("restored")
    assert event["sha256"] == original and event["restored"] == TARGET
    assert fake_sqlcmd.share_files() == []  # the temporary .bak is removed
    assert res.result["target"]["database"] == TARGET and res.result["engine"] == "mssql"
    assert_no_secret(PASSWORD, fake_sqlcmd, json.dumps(res.result))
    assert all(c["password"] == PASSWORD and c["script_mode"] == "0o600" for c in fake_sqlcmd.statements())


def test_existing_database_needs_force_then_replace(run_module, fake_sqlcmd, backup):
    storage, key, _original = backup
    fake_sqlcmd.set(FAKE_DATABASES=["shop", TARGET])
    res = restore(run_module, fake_sqlcmd, storage, key)
    assert res.rc != 0 and "target database copy]of 'shop exists" in res.msg and "force" in res.msg, res.describe()
    assert restore_call(fake_sqlcmd) == [] and fake_sqlcmd.share_files() == []
    res = restore(run_module, fake_sqlcmd, storage, key, force=True)
    assert res.rc == 0, res.describe()
    [call] = restore_call(fake_sqlcmd)
    assert call["sql"].endswith(" WITH CHECKSUM, REPLACE, RECOVERY;\n")


def test_no_replace_without_force_and_move_dict(run_module, fake_sqlcmd, backup):
    storage, key, _original = backup
    res = restore(run_module, fake_sqlcmd, storage, key, database="shop2", recovery=False, checksum=False,
                  move={"shop": "D:\\Data\\shop2.mdf", "shop_log": "E:\\Logs\\o'k.ldf"})
    assert res.rc == 0, res.describe()
    assert not any("FILELISTONLY" in c["sql"] for c in fake_sqlcmd.statements())
    [call] = restore_call(fake_sqlcmd)
    assert call["sql"].endswith(" WITH MOVE N'shop' TO N'D:\\Data\\shop2.mdf', MOVE N'shop_log' TO "
                                "N'E:\\Logs\\o''k.ldf', NORECOVERY;\n")
    assert "REPLACE" not in call["sql"]


def test_move_list_form(run_module, fake_sqlcmd, backup):
    storage, key, _original = backup
    res = restore(run_module, fake_sqlcmd, storage, key, database="shop3",
                  move=[{"logical": "shop", "path": "/data/shop3.mdf"}, {"logical": "shop_log", "path": "/l/3.ldf"}])
    assert res.rc == 0, res.describe()
    assert "MOVE N'shop' TO N'/data/shop3.mdf', MOVE N'shop_log' TO N'/l/3.ldf'" in restore_call(fake_sqlcmd)[0]["sql"]
    res = restore(run_module, fake_sqlcmd, storage, key, database="shop4", move=["shop=/x"])
    assert res.rc != 0 and "target.mssql.move" in res.msg


def test_check_mode_restores_nothing(run_module, fake_sqlcmd, backup):
    storage, key, _original = backup
    res = restore(run_module, fake_sqlcmd, storage, key, check_mode=True, data_dir="/var/opt/mssql/data")
    assert res.rc == 0 and res.result["changed"], res.describe()
    assert [c["sql"].count("RESTORE") for c in fake_sqlcmd.statements()] == [0]
    assert fake_sqlcmd.share_files() == []
    actions = " | ".join(res.result["actions"])
    assert "RESTORE DATABASE [copy]]of 'shop]" in actions and "/var/opt/mssql/data" in actions
    assert "remove the temporary .bak" in actions


def test_failed_restore_reports_sql_server_and_cleans_up(run_module, fake_sqlcmd, backup):
    storage, key, _original = backup
    fake_sqlcmd.set(FAKE_MODE="restore_fails")
    res = restore(run_module, fake_sqlcmd, storage, key)
    assert res.rc != 0, res.describe()
    assert "Msg 3183" in res.msg and "RESTORE DATABASE is terminating abnormally" in res.msg
    assert fake_sqlcmd.share_files() == []


def test_refuses_other_engines_and_options(run_module, fake_sqlcmd, backup, tmp_path):
    storage, key, _original = backup
    target = {"engine": "postgresql", "database": "x"}
    res = run_module("restore", dict(storage=dict(path=str(storage)), manifest_key=key, target=target),
                     env=fake_sqlcmd.env)
    assert res.rc != 0 and "engine 'mssql'" in res.msg
    opts = {"server_dir": SERVER_DIR, "local_dir": str(fake_sqlcmd.share)}
    target = {"engine": "mssql", "database": "x", "mssql": opts}
    res = run_module("restore", dict(storage=dict(path=str(storage)), manifest_key=key, target=target, clean=True),
                     env=fake_sqlcmd.env)
    assert res.rc != 0 and "use force" in res.msg
    opts["mode"] = "url"
    res = run_module("restore", dict(storage=dict(path=str(storage)), manifest_key=key, target=target),
                     env=fake_sqlcmd.env)
    assert res.rc != 0 and "zstd-compressed" in res.msg
