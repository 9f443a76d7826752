"""SQL Server and MongoDB against hostile input and for their secrets (issue 9), with the fake tools
of tests/fakes on PATH (no SQL Server or MongoDB server runs on these machines).

Hostile names: every database name, restore target, backup path, file name and credential name
reaches SQL Server quoted in the T-SQL text handed to sqlcmd ([..] with ] doubled, N'..' with '
doubled), which the tests read back from the script the fake sqlcmd received, split the way SQL
Server's parser splits it: the keywords of each statement are those of a plain name, and the name
comes back whole from inside its quotes. What cannot be quoted safely (line breaks, NUL, names
SQL Server would not take) is refused before sqlcmd runs. For MongoDB every name is one argv item
(no shell), and the --nsInclude/--nsFrom/--nsTo patterns escape it: the fake mongorestore reads
them as mongo-tools does and restores exactly the namespaces asked for. Names MongoDB forbids
(a '.' would move the restore into another database) are refused before any tool runs.

Secrets: at verbosity 3, for a backup and a restore, successful and failing with the tool's own
message, the SQL Server password, the S3 secret of BACKUP TO URL and the MongoDB connection string
are in no process's argv (/proc sampled while the fakes run), in no module output, manifest or
last-attempt record; the files that hold them (T-SQL scripts, mongo --config files) are 0600 while
the tool runs and gone after the run, whether it succeeded or failed.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import signal
import time
import uuid

import pytest

from tests.cmdline_watch import CmdlineWatch
from tests.integration.engine_helpers import children_of, cmdline, start_module
from tests.integration.mongodb_fakes import MONGODUMP, MONGORESTORE, PASSWORD_IN_URI, FakeMongo
from tests.integration.mongodb_fakes import PASSWORD as MONGO_PASSWORD
from tests.integration.mssql_support import PASSWORD, SERVER_DIR, FakeSqlcmd, mssql_source
from tests.modrun import run_module as run_module_now
from tests.security.planting import next_second

from ansible_collections.songmetrix.backup.plugins.module_utils import layout
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import opened_storage

VERBOSE = dict(_ansible_verbosity=3, _ansible_debug=True)
SERVER_DIR_SQL = SERVER_DIR.replace("'", "''")
BAK_RE = r"songmetrix-[A-Za-z0-9_.-]{1,60}-\d{8}T\d{6}Z-[0-9a-f]{8}\.bak"
RESTORE_BAK_RE = r"songmetrix-restore-[A-Za-z0-9_.-]{0,60}-\d{8}T\d{6}Z-[0-9a-f]{8}\.bak"
MARK = "songmetrix-pwned-" + uuid.uuid4().hex[:8]  # a file an injected shell command would create

HOSTILE_MSSQL_NAMES = [
    "x]; DROP DATABASE master; --",
    "a'b",
    "[x]",
    "x'); EXEC xp_cmdshell('id'); --",
    "x$(SQLCMDPASSWORD)",  # a sqlcmd scripting variable: -x keeps it text
    '"q" /* c */ GO',
    "Ünïcødé データ 🗄",
    "]'" * 64,  # 128 characters, SQL Server's limit, each one needing its quote doubled
]


def bracketed(name):
    return "[%s]" % name.replace("]", "]]")


def literal(text):
    return "N'%s'" % text.replace("'", "''")


def safe(text):
    """The file-name part the module derives from a database or logical file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:80]


def kind(call):
    """Which statement a recorded sqlcmd call ran."""
    sql = call["sql"]
    for word in ("FILELISTONLY", "VERIFYONLY", "RESTORE DATABASE", "BACKUP DATABASE", "songmetrix:version="):
        if word in sql:
            return word
    raise AssertionError(sql)


def assert_in_quotes_only(call, baseline):
    """The call's T-SQL has the keywords of the same statement for a plain name, and nothing sqlcmd or
    SQL Server would read outside a quoted value: no comment, no unterminated quote, no sqlcmd command."""
    lexed = call["lex"]
    assert lexed["words"] == baseline[kind(call)], (call["sql"], lexed)
    assert lexed["comments"] == 0 and not lexed["unterminated"] and lexed["sqlcmd_commands"] == [], lexed
    assert "-x" in call["argv"]  # no $(variable) expansion by sqlcmd


def assert_nowhere(secrets, *texts):
    for secret in secrets:
        for text in texts:
            assert secret not in text, "a secret leaked into: %s" % text[:300]


def script_of(call):
    return call["argv"][call["argv"].index("-i") + 1]


# -- SQL Server: T-SQL identifier injection


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """{statement kind: its keywords} for a plain database 'shop': dump, restore with data_dir and log_dir."""
    tmp_path = tmp_path_factory.mktemp("mssql-baseline")
    fake = FakeSqlcmd(tmp_path)
    storage = dict(path=str(tmp_path / "store"))
    res = run_module_now("dump", dict(job="plain", source=mssql_source(local_dir=str(fake.share)), storage=storage),
                         env=fake.env)
    assert res.rc == 0, res.describe()
    res = run_module_now("restore", dict(storage=storage, manifest_key=res.result["manifest_key"],
                                         target=restore_target(fake, "copy", data_dir="/d", log_dir="/l")),
                         env=fake.env)
    assert res.rc == 0, res.describe()
    words = {kind(call): call["lex"]["words"] for call in fake.statements()}
    assert sorted(words) == sorted(["songmetrix:version=", "BACKUP DATABASE", "VERIFYONLY", "FILELISTONLY",
                                    "RESTORE DATABASE"])
    return words


def restore_target(fake, database, server_dir=SERVER_DIR, **mssql):
    opts = {"server_dir": server_dir, "local_dir": str(fake.share)}
    opts.update(mssql)
    return {"engine": "mssql", "host": "db.example", "port": 1433, "user": "sa", "password": PASSWORD,
            "database": database, "mssql": opts}


@pytest.mark.parametrize("name", HOSTILE_MSSQL_NAMES)
def test_hostile_mssql_database_names_stay_inside_their_quotes(run_module, tmp_path, baseline, name):
    fake = FakeSqlcmd(tmp_path)
    fake.set(FAKE_DATABASES=[name])
    res = run_module("dump", dict(job="hostile", source=mssql_source(name, local_dir=str(fake.share)),
                                  storage=dict(path=str(tmp_path / "store"))), env=fake.env)
    assert res.rc == 0, res.describe()
    probe, backup, verify = fake.statements()
    assert probe["sql"].endswith("SELECT N'songmetrix:database=' + CASE WHEN DB_ID(%s) IS NULL THEN N'missing' "
                                 "ELSE N'present' END;\n" % literal(name)), probe["sql"]
    match = re.fullmatch(r"SET NOCOUNT ON;\nBACKUP DATABASE %s TO DISK = N'%s/(%s)' WITH COPY_ONLY, COMPRESSION, "
                         r"CHECKSUM, INIT, FORMAT;\n" % (re.escape(bracketed(name)), re.escape(SERVER_DIR_SQL), BAK_RE),
                         backup["sql"])
    assert match, backup["sql"]
    assert verify["sql"] == "SET NOCOUNT ON;\nRESTORE VERIFYONLY FROM DISK = N'%s/%s' WITH CHECKSUM;\n" % (
        SERVER_DIR_SQL, match.group(1))
    for call in (probe, backup, verify):
        assert_in_quotes_only(call, baseline)
    # SQL Server reads the name back whole from inside its quotes, and backed up that database.
    assert backup["lex"]["identifiers"] == [name]
    assert probe["lex"]["strings"][-3] == name
    assert res.result["manifest"]["database"] == name
    assert fake.share_files() == []


@pytest.mark.parametrize("target", ["t]; DROP DATABASE master; --", "[t]", "t'); EXEC xp_cmdshell('id'); --",
                                    "Ünï データ", "]" * 128])
def test_hostile_restore_targets_and_logical_file_names_stay_inside_their_quotes(run_module, tmp_path, baseline,
                                                                                 target):
    """The logical file names come from the backup itself (RESTORE FILELISTONLY): here those of a
    database named like an injection; they are quoted as any other value."""
    source = "s'); EXEC xp_cmdshell('id'); --"
    data_dir, log_dir = "/var/opt/mssql/da'ta]", "/var/opt/mssql/l'); DROP DATABASE x; --"
    fake = FakeSqlcmd(tmp_path)
    fake.set(FAKE_DATABASES=[source])
    storage = dict(path=str(tmp_path / "store"))
    res = run_module("dump", dict(job="src", source=mssql_source(source, local_dir=str(fake.share)), storage=storage),
                     env=fake.env)
    assert res.rc == 0, res.describe()
    fake.log.unlink()
    res = run_module("restore", dict(storage=storage, manifest_key=res.result["manifest_key"],
                                     target=restore_target(fake, target, data_dir=data_dir, log_dir=log_dir)),
                     env=fake.env)
    assert res.rc == 0, res.describe()
    probe, filelist, restore = fake.statements()
    assert "DB_ID(%s)" % literal(target) in probe["sql"]
    match = re.fullmatch(r"SET NOCOUNT ON;\nRESTORE FILELISTONLY FROM DISK = N'%s/(%s)';\n"
                         % (re.escape(SERVER_DIR_SQL), RESTORE_BAK_RE), filelist["sql"])
    assert match, filelist["sql"]
    stem = "%s_%s" % (safe(target), safe(source))  # <data_dir>/<target>_<logical name><extension>
    assert restore["sql"] == (
        "SET NOCOUNT ON;\nRESTORE DATABASE %s FROM DISK = N'%s/%s' WITH MOVE %s TO %s, MOVE %s TO %s, CHECKSUM, "
        "RECOVERY;\n" % (bracketed(target), SERVER_DIR_SQL, match.group(1), literal(source),
                         literal("%s/%s.mdf" % (data_dir, stem)), literal(source + "_log"),
                         literal("%s/%s_log.ldf" % (log_dir, stem))))
    for call in (probe, filelist, restore):
        assert_in_quotes_only(call, baseline)
    assert restore["lex"]["identifiers"] == [target]
    assert restore["lex"]["strings"][1::2] == [source, source + "_log"]  # MOVE <logical> TO <path>, as data
    [event] = fake.events("restored")
    assert event["restored"] == target
    assert fake.share_files() == []  # the temporary .bak is gone
    assert res.result["target"]["database"] == target


def test_hostile_backup_folders_and_move_paths_stay_inside_their_quotes(run_module, tmp_path, baseline):
    server_dir = "/var/opt/mssql/o'brien]'); EXEC xp_cmdshell('id'); -- dir"
    server_sql = server_dir.replace("'", "''")
    fake = FakeSqlcmd(tmp_path)
    fake.set(FAKE_PATH_MAP={server_dir: str(fake.share)})
    storage = dict(path=str(tmp_path / "store"))
    res = run_module("dump", dict(job="paths", source=mssql_source(server_dir=server_dir, local_dir=str(fake.share)),
                                  storage=storage), env=fake.env)
    assert res.rc == 0, res.describe()
    _probe, backup, verify = fake.statements()
    match = re.fullmatch(r"SET NOCOUNT ON;\nBACKUP DATABASE \[shop\] TO DISK = N'%s/(%s)' WITH COPY_ONLY, "
                         r"COMPRESSION, CHECKSUM, INIT, FORMAT;\n" % (re.escape(server_sql), BAK_RE), backup["sql"])
    assert match, backup["sql"]
    assert backup["lex"]["strings"] == ["%s/%s" % (server_dir, match.group(1))]
    assert verify["lex"]["strings"] == ["%s/%s" % (server_dir, match.group(1))]
    for call in (backup, verify):
        assert_in_quotes_only(call, baseline)
    assert fake.share_files() == []

    fake.log.unlink()
    move = {"shop": "D:\\x'); EXEC xp_cmdshell('id'); --.mdf", "shop_log": "/l/[log]]'; SHUTDOWN; --.ldf"}
    res = run_module("restore", dict(storage=storage, manifest_key=res.result["manifest_key"],
                                     target=restore_target(fake, "copy", server_dir=server_dir, move=move)),
                     env=fake.env)
    assert res.rc == 0, res.describe()
    _probe, restore = fake.statements()
    match = re.fullmatch(r"SET NOCOUNT ON;\nRESTORE DATABASE \[copy\] FROM DISK = N'%s/(%s)' WITH MOVE N'shop' TO %s, "
                         r"MOVE N'shop_log' TO %s, CHECKSUM, RECOVERY;\n"
                         % (re.escape(server_sql), RESTORE_BAK_RE, re.escape(literal(move["shop"])),
                            re.escape(literal(move["shop_log"]))), restore["sql"])
    assert match, restore["sql"]
    assert restore["lex"]["strings"] == ["%s/%s" % (server_dir, match.group(1)), "shop", move["shop"], "shop_log",
                                         move["shop_log"]]
    assert restore["lex"]["words"] == baseline["RESTORE DATABASE"]
    assert restore["lex"]["comments"] == 0 and not restore["lex"]["unterminated"]
    assert fake.share_files() == []


def test_hostile_credential_name_of_backup_to_url_stays_inside_its_quotes(run_module, tmp_path, s3_bucket,
                                                                          s3_storage_params):
    fake = FakeSqlcmd(tmp_path)
    source = {"engine": "mssql", "host": "db.example", "user": "sa", "password": PASSWORD, "database": "shop",
              "mssql": {"mode": "url"}}
    storage = s3_storage_params(s3_bucket)
    plain = run_module("dump", dict(job="url-plain", source=source, storage=storage), env=fake.env)
    assert plain.rc == 0, plain.describe()
    plain_words = [c["lex"]["words"] for c in fake.statements() if "CREDENTIAL" in c["sql"]]
    fake.log.unlink()
    name = "cred]; DROP CREDENTIAL [x]; --'"
    source["mssql"]["credential"] = name
    run_module("dump", dict(job="url", source=source, storage=storage), env=fake.env)
    [call] = [c for c in fake.statements() if "CREDENTIAL" in c["sql"]]
    assert call["sql"].startswith(
        "SET NOCOUNT ON;\nIF EXISTS (SELECT 1 FROM sys.credentials WHERE name = %s)\n    ALTER CREDENTIAL %s WITH "
        % (literal(name), bracketed(name))), call["sql"]
    assert "\nELSE\n    CREATE CREDENTIAL %s WITH " % bracketed(name) in call["sql"]
    assert call["lex"]["words"] == plain_words[0]
    assert call["lex"]["identifiers"][:2] == [name, name] and call["lex"]["strings"][0] == name
    assert call["lex"]["comments"] == 0 and not call["lex"]["unterminated"] and call["script_mode"] == "0o600"


@pytest.mark.parametrize("name, message", [
    ("a\nGO\n:!! touch %s" % MARK, "line breaks"),  # would start a line of sqlcmd commands
    ("a\rb", "line breaks"),
    ("a\x00b", "NUL"),
    ("x" * 129, "longer than 128 characters"),
    ("🗄" * 65, "longer than 128 characters"),  # 130 UTF-16 code units: more than sysname holds
])
def test_names_that_cannot_be_quoted_are_refused_before_sqlcmd_runs(run_module, tmp_path, name, message):
    fake = FakeSqlcmd(tmp_path)
    store = tmp_path / "store"
    res = run_module("dump", dict(job="refused", source=mssql_source(name, local_dir=str(fake.share)),
                                  storage=dict(path=str(store))), env=fake.env)
    assert res.failed and "source.database" in res.msg and message in res.msg, res.describe()
    assert fake.statements() == [] and not store.exists()
    assert not os.path.exists(MARK)


def test_restore_values_that_cannot_be_quoted_are_refused_before_sqlcmd_runs(run_module, tmp_path):
    fake = FakeSqlcmd(tmp_path)
    storage = dict(path=str(tmp_path / "store"))
    res = run_module("dump", dict(job="src", source=mssql_source(local_dir=str(fake.share)), storage=storage),
                     env=fake.env)
    assert res.rc == 0, res.describe()
    key = res.result["manifest_key"]
    fake.log.unlink()
    cases = [
        (restore_target(fake, "a\nGO"), "target.database must not contain NUL or line breaks"),
        (restore_target(fake, "🗄" * 65), "target.database is longer than 128 characters"),
        (restore_target(fake, "t", server_dir="/srv/a\n:!! id"), "server_dir must not contain NUL or line breaks"),
        (restore_target(fake, "t", data_dir="/d\nGO"), "data_dir must not contain NUL or line breaks"),
        (restore_target(fake, "t", move={"shop": "/d/x.mdf\n:r /etc/passwd"}), "move path must not contain"),
        (restore_target(fake, "t", move={"shop\r": "/d/x.mdf"}), "move logical name must not contain"),
    ]
    for target, message in cases:
        res = run_module("restore", dict(storage=storage, manifest_key=key, target=target), env=fake.env)
        assert res.failed and message in res.msg, (message, res.describe())
    assert fake.statements() == [] and fake.share_files() == []


# -- MongoDB: names are argv items and escaped namespace patterns


MONGO_NAMES = [
    # (source database, a collection, include or exclude it, restore target database): names MongoDB
    # takes, full of shell and namespace-pattern characters.
    ("a;touch>%s" % MARK, "c;touch>%s `id` $(id)" % MARK, "include", "b|touch>%s&" % MARK),
    ("st*r?[x]{1}", "it*ms $(touch %s)" % MARK, "exclude", "plain"),  # renamed: the '*' must not be a wildcard
    ("q'u`o`te|&<>(x)", "c\\*'", "include", "Ünï😀*"),
]


@pytest.mark.parametrize("database, collection, select, target", MONGO_NAMES)
def test_hostile_mongodb_names_are_argv_data_and_escaped_patterns(run_module, tmp_path, database, collection, select,
                                                                  target):
    fake = FakeMongo(tmp_path, data={database: {collection: 3, "other": 2}, "shop": {"items": 1}})
    kept = collection if select == "include" else "other"
    storage = dict(path=str(tmp_path / "store"))
    dumped = run_module("dump", dict(job="names", source=dict(source_params(), database=database,
                                                              **{select: [collection]}), storage=storage),
                        env=fake.env(), cwd=tmp_path)
    assert dumped.rc == 0, dumped.describe()
    [dump] = fake.entries("mongodump")
    option = "--collection=" if select == "include" else "--excludeCollection="
    assert dump["argv"] == [MONGODUMP, dump["argv"][1], "--archive", "--db=%s" % database, option + collection]
    assert dump["cmdline"][-3:] == dump["argv"][-3:]  # what the running process held: the same items
    assert dumped.result["manifest"]["table_counts"] == {"%s.%s" % (database, kept): 3 if kept == collection else 2}

    fake.data = {}  # the target server is empty
    restored = run_module("restore", dict(storage=storage, manifest_key=dumped.result["manifest_key"],
                                          target=dict(target_params(), database=target)),
                          env=fake.env(), cwd=tmp_path)
    assert restored.rc == 0, restored.describe()
    _dump, probe, load = fake.entries()
    assert probe["argv"] == [MONGODUMP, probe["argv"][1], "--archive", "--db=%s" % target]
    pattern = database.replace("\\", "\\\\").replace("*", "\\*")
    assert load["argv"] == [MONGORESTORE, load["argv"][1], "--archive", "--nsInclude=%s.*" % pattern,
                            "--nsFrom=%s.*" % pattern, "--nsTo=%s.*" % target.replace("*", "\\*")]
    # mongorestore read the patterns (as mongo-tools does) and restored exactly the collection, renamed.
    assert fake.restored_namespaces() == ["%s.%s" % (target, kept)]
    assert not os.path.exists(tmp_path / MARK) and not os.path.exists(MARK)


def source_params():
    return dict(engine="mongodb", host="127.0.0.1", port=27018, user="backup", password=MONGO_PASSWORD)


def target_params():
    return dict(source_params())


FORBIDDEN_MONGO_DATABASES = [
    "admin.system",  # as a restore target: shop.users would be restored as admin.system.users
    "shop.evil",
    "a b",
    "$(touch %s)" % MARK,
    "a/b",
    "a\\b",
    'a"b',
    "x" * 64,
    "ü" * 32,  # 64 bytes
]


@pytest.mark.parametrize("name", FORBIDDEN_MONGO_DATABASES)
def test_mongodb_database_names_mongodb_forbids_are_refused_before_any_tool_runs(run_module, tmp_path, name):
    fake = FakeMongo(tmp_path)
    store = tmp_path / "store"
    res = run_module("dump", dict(job="forbidden", source=dict(source_params(), database=name),
                                  storage=dict(path=str(store))), env=fake.env())
    assert res.failed and "source.database" in res.msg and "is not a MongoDB database name" in res.msg, \
        res.describe()
    assert fake.entries() == [] and not store.exists()

    backup = run_module("dump", dict(job="ok", source=dict(source_params(), database="shop"),
                                     storage=dict(path=str(store))), env=fake.env())
    assert backup.rc == 0, backup.describe()
    os.unlink(fake.log)
    fake.data = {}
    res = run_module("restore", dict(storage=dict(path=str(store)), manifest_key=backup.result["manifest_key"],
                                     target=dict(target_params(), database=name)), env=fake.env())
    assert res.failed and "target.database" in res.msg and "is not a MongoDB database name" in res.msg, \
        res.describe()
    assert fake.entries() == [] and fake.restored_namespaces() is None
    assert not os.path.exists(MARK)


def test_a_manifest_naming_a_forbidden_mongodb_database_is_refused(run_module, tmp_path):
    """The database restored by default is the one the manifest names: an edited manifest cannot
    point the restore at another database either."""
    fake = FakeMongo(tmp_path)
    store = tmp_path / "store"
    backup = run_module("dump", dict(job="ok", source=dict(source_params(), database="shop"),
                                     storage=dict(path=str(store))), env=fake.env())
    assert backup.rc == 0, backup.describe()
    path = store / backup.result["manifest_key"]
    manifest = json.loads(path.read_text())
    manifest["database"] = "admin.system"
    path.write_text(json.dumps(manifest))
    os.unlink(fake.log)
    tgt = target_params()
    res = run_module("restore", dict(storage=dict(path=str(store)), manifest_key=backup.result["manifest_key"],
                                     target=tgt, force=True), env=fake.env())
    assert res.failed and "admin.system" in res.msg and "is not a MongoDB database name" in res.msg, res.describe()
    assert fake.entries() == [] and fake.restored_namespaces() is None


def test_a_uri_password_with_unencoded_separators_never_shows_as_the_host(run_module, tmp_path):
    """Messages and results name the target by the hosts of mongodb.uri: nothing before the last '@'
    shows, even when the password holds an unencoded '/', '?' or '@' (which ends the host part for a
    parser that reads the URI from the left)."""
    fake = FakeMongo(tmp_path)
    store = tmp_path / "store"
    backup = run_module("dump", dict(job="ok", source=dict(source_params(), database="shop"),
                                     storage=dict(path=str(store))), env=fake.env())
    assert backup.rc == 0, backup.describe()
    password = "Xy/9z?Q@w" + uuid.uuid4().hex[:6]
    target = dict(engine="mongodb", mongodb=dict(uri="mongodb://backup:%s@127.0.0.1:27018/" % password))
    args = dict(storage=dict(path=str(store)), manifest_key=backup.result["manifest_key"], target=target)
    planned = run_module("restore", dict(args, force=True), check_mode=True, env=fake.env(),
                         extra_internal_args=VERBOSE)
    assert planned.rc == 0, planned.describe()
    assert planned.result["target"]["host"] == "127.0.0.1:27018"
    assert planned.result["actions"] == ["restore database shop into 127.0.0.1:27018/shop without checking whether "
                                         "it is empty (force); documents whose _id exists already fail the restore"]
    fake.data = {"shop": {"items": 1}}  # not empty: refused, naming the target
    refused = run_module("restore", args, env=fake.env(FAKE_MONGO_PASSWORD=""), extra_internal_args=VERBOSE)
    assert refused.failed and "target database 127.0.0.1:27018/shop is not empty" in refused.msg, refused.describe()
    for res in (planned, refused):
        assert_nowhere([password, "backup:Xy", "Xy/9z", "9z?Q"], res.stdout + res.stderr)


# -- Secrets


def stored_text(storage, key):
    with opened_storage(storage) as opened:
        return opened.get_small(key).decode()


def test_mssql_password_at_verbosity_3_native_backup_and_restore(run_module, tmp_path):
    fake = FakeSqlcmd(tmp_path)
    fake.set(FAKE_DELAY="0.3")
    storage = dict(path=str(tmp_path / "store"), prefix="sec")
    args = dict(job="sec-mssql", source=mssql_source(local_dir=str(fake.share)), storage=storage)
    with CmdlineWatch(PASSWORD, markers=["/fakes/sqlcmd"]) as watch:
        ok = run_module("dump", args, env=fake.env, extra_internal_args=VERBOSE)
        fake.set(FAKE_MODE="error3201")
        next_second()
        failed = run_module("dump", args, env=fake.env, extra_internal_args=VERBOSE)
        fake.set(FAKE_MODE="")
        restore_args = dict(storage=storage, manifest_key=ok.result["manifest_key"],
                            target=restore_target(fake, "copy", data_dir="/var/opt/mssql/data"))
        restored = run_module("restore", restore_args, env=fake.env, extra_internal_args=VERBOSE)
        fake.set(FAKE_MODE="restore_fails")
        restore_failed = run_module("restore", restore_args, env=fake.env, extra_internal_args=VERBOSE)
    assert ok.rc == 0, ok.describe()
    assert failed.failed and "Msg 3201" in failed.msg and "Access is denied" in failed.msg, failed.describe()
    assert restored.rc == 0, restored.describe()
    assert restore_failed.failed and "Msg 3183" in restore_failed.msg, restore_failed.describe()
    assert watch.seen == [] and watch.samples > 3, watch.seen
    assert watch.tool_samples["/fakes/sqlcmd"] > 0  # sqlcmd was running while /proc was read

    calls = fake.statements()
    assert len(calls) == 3 + 2 + 3 + 3  # probe, backup, verify; probe, backup; probe, filelist, restore twice
    for call in calls:
        assert call["password"] == PASSWORD  # it reached sqlcmd, through SQLCMDPASSWORD only
        assert not any(PASSWORD in arg for arg in call["argv"] + call["cmdline"]), call["argv"]
        assert call["script_mode"] == "0o600"
        assert not os.path.exists(script_of(call))  # removed, after success and failure alike
    manifest = stored_text(storage, ok.result["manifest_key"])
    attempt = stored_text(storage, layout.attempt_key("sec", "sec-mssql"))
    assert json.loads(attempt)["status"] == "failed" and "Msg 3201" in json.loads(attempt)["error"]
    assert_nowhere([PASSWORD], manifest, attempt, *(r.stdout + r.stderr for r in (ok, failed, restored,
                                                                                   restore_failed)))
    assert fake.share_files() == []


def test_mssql_url_mode_s3_secret_only_in_the_0600_tsql_file(run_module, tmp_path, s3_server, s3_bucket,
                                                             s3_storage_params):
    fake = FakeSqlcmd(tmp_path)
    fake.set(FAKE_DELAY="0.3")
    storage = s3_storage_params(s3_bucket, prefix="sec")
    source = {"engine": "mssql", "host": "db.example", "user": "sa", "password": PASSWORD, "database": "shop",
              "mssql": {"mode": "url"}}
    secrets = [PASSWORD, s3_server.secret_key]
    with CmdlineWatch(*secrets, markers=["/fakes/sqlcmd"]) as watch:
        ok = run_module("dump", dict(job="sec-url", source=source, storage=storage), env=fake.env,
                        extra_internal_args=VERBOSE)
        fake.set(FAKE_MODE="verifyonly_fails")
        next_second()
        failed = run_module("dump", dict(job="sec-url", source=source, storage=storage), env=fake.env,
                            extra_internal_args=VERBOSE)
        fake.set(FAKE_MODE="")
        target = {"engine": "mssql", "host": "db.example", "user": "sa", "password": PASSWORD, "database": "copy"}
        restore_args = dict(storage=storage, manifest_key=ok.result["manifest_key"], target=target)
        restored = run_module("restore", restore_args, env=fake.env, extra_internal_args=VERBOSE)
        fake.set(FAKE_MODE="restore_fails")
        restore_failed = run_module("restore", restore_args, env=fake.env, extra_internal_args=VERBOSE)
    assert ok.rc == 0, ok.describe()
    assert failed.failed and "Damage to the backup set was detected" in failed.msg, failed.describe()
    assert restored.rc == 0, restored.describe()
    assert restore_failed.failed and "Msg 3183" in restore_failed.msg, restore_failed.describe()
    assert watch.seen == [] and watch.samples > 3, watch.seen
    assert watch.tool_samples["/fakes/sqlcmd"] > 0

    secret = "%s:%s" % (s3_server.access_key, s3_server.secret_key)
    with_credential = [c for c in fake.statements() if "CREDENTIAL" in c["sql"]]
    assert len(with_credential) == 4  # one BACKUP TO URL and one RESTORE FROM URL per run
    for call in fake.statements():
        if call in with_credential:  # the secret travels in the T-SQL script only
            assert "SECRET = %s" % literal(secret) in call["sql"]
        assert call["script_mode"] == "0o600"
        assert not os.path.exists(script_of(call))
        for value in secrets:
            assert not any(value in arg for arg in call["argv"] + call["cmdline"]), call["argv"]
    manifest = stored_text(storage, ok.result["manifest_key"])
    attempt = stored_text(storage, layout.attempt_key("sec", "sec-url"))
    assert json.loads(attempt)["status"] == "failed"
    assert_nowhere(secrets + [secret], manifest, attempt,
                   *(r.stdout + r.stderr for r in (ok, failed, restored, restore_failed)))


@pytest.mark.parametrize("connection", ["fields", "uri"])
def test_mongodb_connection_secrets_at_verbosity_3(run_module, tmp_path, connection):
    fake = FakeMongo(tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir()
    storage = dict(path=str(tmp_path / "store"), prefix="sec")
    if connection == "fields":
        source, target = dict(source_params(), database="shop"), dict(target_params(), database="shop")
        secrets = [MONGO_PASSWORD, PASSWORD_IN_URI]
    else:
        uri = "mongodb://backup:%s@127.0.0.1:27018/?authSource=admin" % PASSWORD_IN_URI
        source = target = dict(engine="mongodb", database="shop", mongodb=dict(uri=uri))
        secrets = [MONGO_PASSWORD, PASSWORD_IN_URI, uri]
    args = dict(job="sec-mongo", source=source, storage=storage, spool_dir=str(spool))
    with CmdlineWatch(*secrets, markers=["/fakes/mongodump", "/fakes/mongorestore"]) as watch:
        ok = run_module("dump", args, env=fake.env(FAKE_DELAY="0.3"), extra_internal_args=VERBOSE)
        next_second()
        failed = run_module("dump", args, env=fake.env(FAKE_MODE="die_midway"), extra_internal_args=VERBOSE)
        fake.data = {}
        restore_args = dict(storage=storage, manifest_key=ok.result["manifest_key"], target=target,
                            spool_dir=str(spool))
        restored = run_module("restore", restore_args, env=fake.env(FAKE_DELAY="0.3"), extra_internal_args=VERBOSE)
        restore_failed = run_module("restore", restore_args, env=fake.env(FAKE_MODE="restore_auth_fail"),
                                    extra_internal_args=VERBOSE)
    assert ok.rc == 0, ok.describe()
    assert failed.failed and "incomplete read of message header" in failed.msg, failed.describe()
    assert restored.rc == 0, restored.describe()
    assert restore_failed.failed and "(AuthenticationFailed) Authentication failed" in restore_failed.msg, \
        restore_failed.describe()
    assert watch.seen == [] and watch.samples > 3, watch.seen
    assert watch.tool_samples["/fakes/mongodump"] > 0 and watch.tool_samples["/fakes/mongorestore"] > 0

    entries = fake.entries()
    assert [e["tool"] for e in entries] == ["mongodump", "mongodump", "mongodump", "mongorestore", "mongodump",
                                            "mongorestore"]
    for entry in entries:
        assert PASSWORD_IN_URI in entry["uri"]  # the tool got the password, through its --config file only
        assert entry["config_mode"] == "0o600"
        assert os.path.dirname(entry["config_path"]) == str(spool)
        assert not os.path.exists(entry["config_path"])  # removed, after success and failure alike
        for value in secrets:
            assert not any(value in arg for arg in entry["argv"] + entry["cmdline"]), entry["argv"]
    assert os.listdir(spool) == []
    manifest = stored_text(storage, ok.result["manifest_key"])
    attempt = stored_text(storage, layout.attempt_key("sec", "sec-mongo"))
    assert json.loads(attempt)["status"] == "failed" and "incomplete read" in json.loads(attempt)["error"]
    assert_nowhere(secrets, manifest, attempt, *(r.stdout + r.stderr for r in (ok, failed, restored,
                                                                               restore_failed)))


def running_tool(pid, marker, timeout=30):
    """The child of ``pid`` with ``marker`` in its argv (the fakes run under python3: no comm to match)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children_of(pid):
            try:
                if marker in cmdline(child):
                    return child
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError("no child of %d with %r in its argv" % (pid, marker))


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_module_stopped_by_a_signal_removes_its_secret_file_and_keeps_nothing(tmp_path, signame):
    """A cancelled AWX job or systemd unit (SIGTERM), a lost SSH session (SIGHUP), mid-dump: the run
    fails saying so, its tool is stopped, the 0600 --config file with the connection string is
    removed, and no artifact, manifest or lock is left in the storage."""
    fake = FakeMongo(tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir()
    store = tmp_path / "store"
    args = dict(job="stopped", source=dict(source_params(), database="shop"), storage=dict(path=str(store)),
                spool_dir=str(spool))
    proc = start_module("dump", args, tmp_path, env=fake.env(FAKE_DELAY="60"))
    try:
        tool = running_tool(proc.pid, b"--archive")  # the dump itself, not the version probe
        assert len(os.listdir(spool)) == 1  # the config file, while mongodump runs
        proc.send_signal(getattr(signal, signame))
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result.get("failed") and "stopped by %s" % signame in result["msg"], (result, err[-2000:])
    assert os.listdir(spool) == []
    assert not os.path.exists("/proc/%d" % tool) or open("/proc/%d/stat" % tool).read().split()[2] == "Z"
    assert [p for p in glob.glob(str(store / "**"), recursive=True) if os.path.isfile(p)] == []


def _sigkill_mid_tool(args, tmp_path, env, marker):
    """Start a dump, SIGKILL the module while its tool runs, then the orphaned tool; the module's pid."""
    proc = start_module("dump", args, tmp_path, env=env)
    try:
        tool = running_tool(proc.pid, marker)
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    with contextlib.suppress(ProcessLookupError):
        os.kill(tool, signal.SIGKILL)
    return proc.pid


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.mark.parametrize("engine", ["mongodb", "mssql"])
def test_a_secret_file_a_sigkilled_run_left_is_removed_by_the_next_run(run_module, tmp_path, engine):
    """SIGKILL cannot be caught, so the killed run's 0600 file stays (named after its pid); the next
    run that writes a secret file in that folder removes it once its owner is gone and it is a
    minute old, and keeps the files of live processes and brand-new ones."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    store = str(tmp_path / "store")
    if engine == "mongodb":
        fake = FakeMongo(tmp_path)
        args = dict(job="killed", source=dict(source_params(), database="shop"), storage=dict(path=store),
                    spool_dir=str(folder))
        env, slow_env, marker, kind = fake.env(), fake.env(FAKE_DELAY="60"), b"--archive", "mongodb-config"
        content = 'uri: "mongodb://backup:'  # the connection string with its password: what the sweep is for
    else:
        fake = FakeSqlcmd(tmp_path)
        args = dict(job="killed", source=mssql_source(local_dir=str(fake.share)), storage=dict(path=store))
        env = dict(fake.env, TMPDIR=str(folder))  # sqlcmd's T-SQL goes to the system's temp folder
        slow_env, marker, kind, content = dict(env, FAKE_DELAY="60"), b"-i", "tsql", ""

    killed_pid = _sigkill_mid_tool(args, tmp_path, slow_env, marker)
    left = sorted(os.listdir(folder))
    assert len(left) == 1 and left[0].startswith(".songmetrix-private-%d-%s-" % (killed_pid, kind)), left
    leftover = folder / left[0]
    assert oct(leftover.stat().st_mode & 0o777) == "0o600"
    assert leftover.read_text().startswith(content)
    _age(leftover, 120)
    live = folder / (".songmetrix-private-%d-tsql-live.sql" % os.getpid())  # a running owner: kept
    live.write_text("x")
    _age(live, 120)
    fresh = folder / (".songmetrix-private-%d-gpg-fresh" % killed_pid)  # under a minute old: kept
    fresh.write_text("x")

    next_second()
    res = run_module("dump", args, env=env)
    assert res.rc == 0, res.describe()
    assert sorted(os.listdir(folder)) == sorted([live.name, fresh.name])
