"""engine mssql, native mode: BACKUP DATABASE TO DISK through a fake sqlcmd, the .bak through the pipeline."""

import json
import os
import re

import pytest
from engine_helpers import decompress_to, stored_files
from mssql_support import PASSWORD, SERVER_DIR, FakeSqlcmd, assert_no_secret, mssql_source, sha256_file

WEIRD = "we]ird 'db"


@pytest.fixture
def fake_sqlcmd(tmp_path):
    return FakeSqlcmd(tmp_path)


def dump(run_module, fake, storage, source, check_mode=False, **extra):
    args = dict(job="mssql-job", source=source, storage=dict(path=str(storage)))
    args.update(extra)
    return run_module("dump", args, check_mode=check_mode, env=fake.env)


def manifests(storage):
    return [name for name in stored_files(str(storage)) if name.endswith(".manifest.json")]


def test_native_backup_exact_tsql_argv_and_manifest(run_module, fake_sqlcmd, tmp_path):
    fake_sqlcmd.set(FAKE_DATABASES=[WEIRD])
    storage = tmp_path / "store"
    res = dump(run_module, fake_sqlcmd, storage, mssql_source(WEIRD, local_dir=str(fake_sqlcmd.share)))
    assert res.rc == 0, res.describe()

    calls = fake_sqlcmd.calls()
    assert [c["argv"][0] for c in calls[:2]] == ["--version", "-?"]
    probe, backup, verify = fake_sqlcmd.statements()
    script = backup["argv"][-1]
    assert backup["argv"] == ["-S", "db.example,1433", "-U", "sa", "-d", "master", "-b", "-r1", "-x", "-h", "-1",
                              "-W", "-i", script]
    assert all(c["script_mode"] == "0o600" for c in (probe, backup, verify))
    assert not os.path.exists(script)  # the T-SQL file is removed after the run
    # The password reaches sqlcmd only through SQLCMDPASSWORD.
    assert all(c["password_set"] and c["password"] == PASSWORD for c in (probe, backup, verify))
    assert "DB_ID(N'we]ird ''db')" in probe["sql"]

    match = re.fullmatch(
        r"SET NOCOUNT ON;\nBACKUP DATABASE \[we\]\]ird 'db\] TO DISK = N'/var/opt/mssql/o''brien backups/"
        r"(songmetrix-we_ird__db-\d{8}T\d{6}Z-[0-9a-f]{8}\.bak)' WITH COPY_ONLY, COMPRESSION, CHECKSUM, INIT, "
        r"FORMAT;\n",
        backup["sql"],
    )
    assert match, backup["sql"]
    server_path = "%s/%s" % (SERVER_DIR.replace("'", "''"), match.group(1))
    assert verify["sql"] == "SET NOCOUNT ON;\nRESTORE VERIFYONLY FROM DISK = N'%s' WITH CHECKSUM;\n" % server_path

    manifest = res.result["manifest"]
    assert manifest["engine"] == "mssql" and manifest["format"] == "bak" and manifest["database"] == WEIRD
    assert manifest["server_version"].startswith("Microsoft SQL Server 2022")
    assert manifest["tool_version"] == "sqlcmd 18.4.0001.1"
    assert manifest["artifact"].endswith(".bak.zst")
    # The stored artifact is the very .bak SQL Server wrote, and the .bak is gone from the share.
    original = fake_sqlcmd.events("wrote")[0]["sha256"]
    restored = decompress_to(os.path.join(str(storage), manifest["artifact"]), str(tmp_path / "out.bak"))
    assert sha256_file(restored) == original
    assert fake_sqlcmd.share_files() == []
    with open(os.path.join(str(storage), res.result["manifest_key"])) as handle:
        stored_manifest = handle.read()
    assert_no_secret(PASSWORD, fake_sqlcmd, json.dumps(res.result), stored_manifest, res.stderr)
    assert "sqlcmd" in os.path.basename(res.result["command"][0]) and "-i" in res.result["command"]


def test_options_off_go_sqlcmd_tls_flags_and_kept_bak(run_module, fake_sqlcmd, tmp_path):
    fake_sqlcmd.set(FAKE_FLAVOUR="go")
    storage = tmp_path / "store"
    source = mssql_source(copy_only=False, compression=False, checksum=False, init=False, format=False, verify=False,
                          remove_bak=False, trust_server_certificate=True, encrypt="strict", stats=25,
                          local_dir=str(fake_sqlcmd.share))
    source["connect_timeout"] = 7
    res = dump(run_module, fake_sqlcmd, storage, source, compression="none")
    assert res.rc == 0, res.describe()
    probe, backup = fake_sqlcmd.statements()
    assert backup["argv"] == ["-S", "db.example,1433", "-U", "sa", "-d", "master", "-b", "-r1", "-x", "-h", "-1",
                              "-W", "-l", "7", "-Ns", "-C", "-i", backup["argv"][-1]]
    assert re.search(r"TO DISK = N'[^\n]*\.bak' WITH NO_CHECKSUM, STATS = 25;\n$", backup["sql"]), backup["sql"]
    assert "VERIFYONLY" not in json.dumps(fake_sqlcmd.statements())
    assert res.result["manifest"]["tool_version"] == "go-sqlcmd v1.8.2"
    kept = fake_sqlcmd.share_files()
    assert len(kept) == 1 and kept[0].endswith(".bak")
    assert "remove_bak is false" in json.dumps(res.result.get("warnings"))
    # compression none: the stored artifact is the .bak itself
    assert res.result["manifest"]["artifact"].endswith(".bak")
    assert sha256_file(os.path.join(str(storage), res.result["manifest"]["artifact"])) == sha256_file(
        os.path.join(str(fake_sqlcmd.share), kept[0]))


def test_trust_server_certificate_only_when_asked(run_module, fake_sqlcmd, tmp_path):
    res = dump(run_module, fake_sqlcmd, tmp_path / "store", mssql_source(local_dir=str(fake_sqlcmd.share)))
    assert res.rc == 0, res.describe()
    for call in fake_sqlcmd.statements():
        assert "-C" not in call["argv"] and not any(a.startswith("-N") for a in call["argv"])


def _failed(res, storage, fake, *needles):
    assert res.rc != 0 and res.result["failed"], res.describe()
    for needle in needles:
        assert needle in res.msg, res.msg
    assert manifests(storage) == []
    assert fake.share_files() == []  # the .bak is removed after a failure too
    assert_no_secret(PASSWORD, fake, json.dumps(res.result))


def test_error_3201_fails_with_sql_servers_message(run_module, fake_sqlcmd, tmp_path):
    fake_sqlcmd.set(FAKE_MODE="error3201")
    storage = tmp_path / "store"
    res = dump(run_module, fake_sqlcmd, storage, mssql_source(local_dir=str(fake_sqlcmd.share)))
    _failed(res, storage, fake_sqlcmd, "Msg 3201, Level 16", "Cannot open backup device",
            "Operating system error 5(Access is denied.)", "BACKUP DATABASE is terminating abnormally")
    assert "exit status 1" in res.msg


def test_failed_write_leaves_no_partial_bak(run_module, fake_sqlcmd, tmp_path):
    fake_sqlcmd.set(FAKE_MODE="write_fails")
    storage = tmp_path / "store"
    res = dump(run_module, fake_sqlcmd, storage, mssql_source(local_dir=str(fake_sqlcmd.share)))
    _failed(res, storage, fake_sqlcmd, "Msg 3202", "There is not enough space on the disk")
    assert len(fake_sqlcmd.events("wrote")) == 1  # it was written, then removed


def test_failed_verifyonly_fails_the_backup(run_module, fake_sqlcmd, tmp_path):
    fake_sqlcmd.set(FAKE_MODE="verifyonly_fails")
    storage = tmp_path / "store"
    res = dump(run_module, fake_sqlcmd, storage, mssql_source(local_dir=str(fake_sqlcmd.share)))
    _failed(res, storage, fake_sqlcmd, "RESTORE VERIFYONLY", "Msg 3189", "Damage to the backup set was detected",
            "VERIFY DATABASE is terminating abnormally")


def test_login_failure_18456(run_module, fake_sqlcmd, tmp_path):
    storage = tmp_path / "store"
    source = mssql_source(local_dir=str(fake_sqlcmd.share))
    source["password"] = "wrong-Secret-1"
    res = dump(run_module, fake_sqlcmd, storage, source)
    _failed(res, storage, fake_sqlcmd, "connecting to SQL Server", "Login failed for user 'sa'")
    assert_no_secret("wrong-Secret-1", fake_sqlcmd, json.dumps(res.result))
    assert len(fake_sqlcmd.statements()) == 1  # nothing after the failed connection


def test_missing_database(run_module, fake_sqlcmd, tmp_path):
    storage = tmp_path / "store"
    res = dump(run_module, fake_sqlcmd, storage, mssql_source("nosuch", local_dir=str(fake_sqlcmd.share)))
    _failed(res, storage, fake_sqlcmd, "database nosuch does not exist on db.example,1433")


def test_share_mounted_elsewhere_and_wrong_local_dir(run_module, fake_sqlcmd, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    storage = tmp_path / "store"
    res = dump(run_module, fake_sqlcmd, storage, mssql_source(local_dir=str(other)))
    assert res.rc != 0
    assert "does not exist on this host" in res.msg and "local_dir" in res.msg
    assert manifests(storage) == []
    # Written on the "server" where this host cannot see it: the message says so and names it.
    [left] = fake_sqlcmd.share_files()
    assert left in res.msg and "cannot remove" in res.msg
    # local_dir defaults to server_dir: the layout where the module runs on the database host
    fake_sqlcmd.set(FAKE_PATH_MAP={})
    host_dir = tmp_path / "host-backups"
    host_dir.mkdir()
    source = mssql_source()
    source["mssql"]["server_dir"] = str(host_dir)
    res = dump(run_module, fake_sqlcmd, storage, source)
    assert res.rc == 0, res.describe()
    assert "TO DISK = N'%s/songmetrix-shop-" % host_dir in fake_sqlcmd.statements()[-2]["sql"]
    assert os.listdir(str(host_dir)) == []


def test_check_mode_runs_nothing_that_writes(run_module, fake_sqlcmd, tmp_path):
    storage = tmp_path / "store"
    res = dump(run_module, fake_sqlcmd, storage, mssql_source(local_dir=str(fake_sqlcmd.share)), check_mode=True)
    assert res.rc == 0 and res.result["changed"], res.describe()
    assert [("BACKUP" in c["sql"] or "RESTORE" in c["sql"]) for c in fake_sqlcmd.statements()] == [False]
    assert fake_sqlcmd.share_files() == [] and not storage.exists()
    assert res.result["manifest"]["engine"] == "mssql"
    assert_no_secret(PASSWORD, fake_sqlcmd, json.dumps(res.result))


def test_validation(run_module, fake_sqlcmd, tmp_path):
    storage = tmp_path / "store"
    cases = [
        (dict(mssql_source(), ssl_mode="require"), "source.ssl_mode is not used by engine mssql"),
        (mssql_source(stripes=2), "stripes is for url mode only"),
        ({"engine": "mssql", "database": "shop"}, "server_dir"),
        (mssql_source(mode="url", server_dir=None), "needs storage.type s3"),
        (mssql_source(local_dir="relative/dir"), "local_dir must be an absolute path"),
        (mssql_source("a\nb"), "line breaks"),
    ]
    for source, needle in cases:
        res = dump(run_module, fake_sqlcmd, storage, source)
        assert res.rc != 0 and needle in res.msg, (needle, res.describe())
    assert not any("BACKUP" in c["sql"] for c in fake_sqlcmd.statements())
