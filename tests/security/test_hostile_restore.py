"""Hostile storage, restore side: what a storage-only attacker plants is loaded by sandboxed clients and
extracted confined to its target.

Each backup here is planted the way someone who can write to the bucket would (tests/security/
planting.py: an artifact and a manifest whose sizes and SHA-256 match), so it passes `verify deep`.
The restore must then fail visibly, run nothing (the marker file a planted command would write
never appears), write nothing outside its target and read no file of the host into the target.
Real PostgreSQL 15 and MariaDB 10.11 servers (tests/conftest.py).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import stat
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.security.planting import plant_backup
from tests.servers import other_pg_bin_dir

PG_HEAD = "--\n-- PostgreSQL database dump\n--\n\nSET client_encoding = 'UTF8';\nCREATE TABLE planted (id int);\n"
PG_FOOT = "\nINSERT INTO planted VALUES (1);\n\n--\n-- PostgreSQL database dump complete\n--\n\n"
MY_HEAD = "-- MariaDB dump 10.19\n--\n/*!40101 SET NAMES utf8mb4 */;\nCREATE TABLE planted (id INT);\n"
MY_FOOT = "\nINSERT INTO planted VALUES (1);\n-- Dump completed on 2026-11-23  2:00:00\n"


@pytest.fixture
def marker(tmp_path):
    """Where a planted command would leave its trace; it must never appear."""
    path = tmp_path / ("ran-" + uuid.uuid4().hex[:8])
    yield path
    assert not path.exists(), "a command planted in the backup ran: %s" % path.read_text(errors="replace")


@pytest.fixture
def secret(tmp_path):
    """A root-only file of the restore host that nothing may read into a restore."""
    path = tmp_path / "host-secret"
    path.write_text("TOPSECRET-%s\n" % uuid.uuid4().hex)
    path.chmod(0o600)
    return path


@pytest.fixture
def pg_target(pg_server):
    name = "hostile_%s" % uuid.uuid4().hex[:8]
    yield name
    pg_server.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


@pytest.fixture
def my_target(mariadb_server):
    name = "hostile_%s" % uuid.uuid4().hex[:8]
    yield name
    mariadb_server.sql("DROP DATABASE IF EXISTS `%s`" % name)


def pg_conn(pg, database, **extra):
    return dict(engine="postgresql", database=database, **pg.conn_params(), **extra)


def my_conn(server, database):
    return dict(engine="mariadb", database=database, **server.conn_params())


def verify_deep(run_module, root, job):
    res = run_module("verify", dict(job=job, deep=True, storage=dict(path=str(root))))
    assert res.rc == 0, "the planted backup should pass verify deep: true\n" + res.describe()


def restore_latest(run_module, root, job, target, _check_mode=False, **extra):
    return run_module("restore", dict(job=job, latest=True, storage=dict(path=str(root)), target=target, **extra),
                      check_mode=_check_mode)


# -- PostgreSQL plain format: psql runs in restricted mode -------------------------------------------------

PSQL_TRICKS = {
    "shell": "\\! id > {m}\n",
    "after-sql-on-one-line": "SELECT 1; \\! id > {m}\n",
    "output-pipe": "\\o | id > {m}\nSELECT 1;\n",
    "copy-program": "\\copy (SELECT 1) TO PROGRAM 'id > {m}'\n",
    "write-buffer": "SELECT 1 \\w {m}\n",
    "query-to-pipe": "SELECT 1 \\g | id > {m}\n",
    "gexec": "SELECT 'CREATE TABLE gexec_ran (x int)' \\gexec\n\\! id > {m}\n",
    "own-restrict-pair": "\\unrestrict K1\n\\! id > {m}\n",  # the header below holds \restrict K1
    "guessed-key": "\\unrestrict 0123456789abcdef\n\\! id > {m}\n",
}


@pytest.mark.parametrize("trick", sorted(PSQL_TRICKS))
def test_planted_psql_meta_commands_pass_deep_verify_but_never_run(run_module, pg_server, pg_target, tmp_path,
                                                                   marker, trick):
    head = PG_HEAD.replace("\n\nSET", "\n\n\\restrict K1\n\nSET") if trick == "own-restrict-pair" else PG_HEAD
    payload = head + PSQL_TRICKS[trick].format(m=marker) + PG_FOOT
    root = tmp_path / "store"
    plant_backup(root, "orders", payload.encode(), engine="postgresql", fmt="plain")
    verify_deep(run_module, root, "orders")

    res = restore_latest(run_module, root, "orders", pg_conn(pg_server, pg_target), create_database=True)
    assert res.failed, res.describe()
    assert "psql meta-command" in res.msg and "refuses to run" in res.msg, res.msg
    assert pg_server.psql("SELECT count(*) FROM pg_class WHERE relname = 'gexec_ran'", dbname=pg_target) == "0"


def test_a_custom_format_job_switched_to_plain_by_its_manifest_runs_nothing(run_module, pg_server, pg_database,
                                                                             pg_target, tmp_path, marker):
    pg_server.psql("CREATE TABLE items AS SELECT g AS id FROM generate_series(1, 100) g", dbname=pg_database)
    root = tmp_path / "store"
    real = run_module("dump", dict(job="shop", source=dict(pg_conn(pg_server, pg_database), format="custom"),
                                   storage=dict(path=str(root))))
    assert real.rc == 0, real.describe()
    planted = plant_backup(root, "shop", (PG_HEAD + "\\! id > %s\n" % marker + PG_FOOT).encode(),
                           engine="postgresql", fmt="plain")
    verify_deep(run_module, root, "shop")

    res = restore_latest(run_module, root, "shop", pg_conn(pg_server, pg_target), create_database=True)
    assert res.failed and res.result["manifest_key"] == planted.manifest_key, res.describe()
    assert "psql meta-command" in res.msg, res.msg


def test_a_psql_without_restrict_is_refused_before_anything_is_loaded(run_module, pg_server, pg_target, tmp_path):
    old = other_pg_bin_dir()  # PostgreSQL 16.2: before 16.10, no \restrict
    root = tmp_path / "store"
    plant_backup(root, "orders", (PG_HEAD + PG_FOOT).encode(), engine="postgresql", fmt="plain")
    for check_mode in (True, False):
        res = run_module("restore", dict(job="orders", latest=True, storage=dict(path=str(root)), create_database=True,
                                         target=pg_conn(pg_server, pg_target, executable=str(old / "pg_restore"))),
                         check_mode=check_mode)
        assert res.failed, res.describe()
        assert "has no \\restrict" in res.msg and "is 16.2" in res.msg and "16.10" in res.msg, res.msg
        assert "postgresql-client" in res.msg and "target.executable" in res.msg, res.msg
        assert pg_server.psql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % pg_target) == "0"


def pg_source_with_tricky_rows(pg_server, database):
    """Rows whose COPY lines look like psql meta-commands: they are data, and must come back as they were.
    In the one-column table, CR + 'estrict K2' is the COPY line '\\restrict K2', the very line pg_dump
    --restrict-key=K2 writes in its header."""
    pg_server.psql("CREATE TABLE notes (body text); "
                   "INSERT INTO notes VALUES (E'\\\\! id'), (E'\\restrict K2'), (E'\\\\unrestrict K2'), "
                   "(E'line\\nwith \\\\restrict inside'), ('ünïcødé');", dbname=database)


def notes(pg_server, database):
    return pg_server.psql("SELECT md5(body) FROM notes ORDER BY md5(body)", dbname=database)


@pytest.mark.parametrize("pg_dump_of", ["15-own-restrict-key", "16.2-no-restrict-lines"])
def test_legit_plain_dumps_still_restore(run_module, pg_server, pg_database, pg_target, tmp_path, pg_dump_of):
    """pg_dump 15.18 writes \\restrict K2 ... \\unrestrict K2 (with --restrict-key, K2 also starts a COPY line
    of the data: CR is written as \\r); PostgreSQL 16.2's pg_dump writes neither."""
    pg_source_with_tricky_rows(pg_server, pg_database)
    if pg_dump_of.startswith("15"):
        argv = [pg_server.tool("pg_dump"), "--restrict-key=K2"]
    else:
        argv = [str(other_pg_bin_dir() / "pg_dump")]
    dumped = subprocess.run(argv + ["--no-owner", "-h", pg_server.host, "-p", str(pg_server.port), "-U", pg_server.user,
                                    "-d", pg_database], env=pg_server.client_env(), check=True,
                            stdout=subprocess.PIPE).stdout
    assert dumped.count(b"\n\\restrict K2\n") == (2 if pg_dump_of.startswith("15") else 1)  # header + data
    root = tmp_path / "store"
    plant_backup(root, "notes", dumped, engine="postgresql", fmt="plain")
    res = restore_latest(run_module, root, "notes", pg_conn(pg_server, pg_target), create_database=True)
    assert res.rc == 0, res.describe()
    assert notes(pg_server, pg_target) == notes(pg_server, pg_database)


def test_planted_supabase_roles_attachment_never_runs(run_module, pg_server, pg_target, tmp_path, marker):
    """The roles attachment is applied without ON_ERROR_STOP (an existing role is no error): psql goes on after
    refusing the meta-command, and the restore still fails."""
    root = tmp_path / "store"
    roles = ("--\n-- PostgreSQL database cluster dump\n--\n\nCREATE ROLE planted_%s;\n\\! id > %s\n"
             % (uuid.uuid4().hex[:6], marker)).encode()
    data = subprocess.run(["zstd", "-q", "-c"], input=roles, stdout=subprocess.PIPE, check=True).stdout
    planted = plant_backup(root, "supa", (PG_HEAD + PG_FOOT).encode(), engine="postgresql", fmt="plain")
    key = planted.record["artifact"].replace(".sql.zst", ".roles.sql.zst")
    (root / key).write_bytes(data)
    record = dict(planted.record, engine="supabase", attachments=[
        dict(role="roles", key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())])
    from ansible_collections.songmetrix.backup.plugins.module_utils import manifest
    planted.manifest_path.write_bytes(manifest.encode(record))
    target = dict(engine="supabase", database=pg_target, ssl_mode="disable", supabase=dict(roles=True),
                  **pg_server.conn_params())
    res = restore_latest(run_module, root, "supa", target, create_database=True)
    assert res.failed, res.describe()
    assert "roles attachment" in res.msg and "psql meta-command" in res.msg, res.msg


# -- MariaDB: --binary-mode, --sandbox, --local-infile=0 --------------------------------------------------

def my_tricks(marker, secret, tmp_path):
    sourced = tmp_path / "sourced.sql"
    sourced.write_text("CREATE TABLE sourced_ran (x INT);\n")
    return {
        "shell": "\\! id > %s\n" % marker,
        "system": "system id > %s\n" % marker,
        "tee": "\\T %s\nSELECT 1;\n" % marker,
        "source": "\\. %s\n" % sourced,
        "local-infile": "CREATE TABLE loot (x TEXT);\nLOAD DATA LOCAL INFILE '%s' INTO TABLE loot;\n" % secret,
    }


@pytest.mark.parametrize("trick", ["shell", "system", "tee", "source", "local-infile"])
def test_planted_mariadb_client_commands_never_run(run_module, mariadb_server, my_target, tmp_path, marker, secret,
                                                   trick):
    root = tmp_path / "store"
    payload = MY_HEAD + my_tricks(marker, secret, tmp_path)[trick] + MY_FOOT
    plant_backup(root, "shop", payload.encode(), engine="mariadb", fmt="sql")
    verify_deep(run_module, root, "shop")

    res = restore_latest(run_module, root, "shop", my_conn(mariadb_server, my_target), create_database=True)
    assert res.failed, res.describe()
    tables = mariadb_server.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = '%s'"
                                % my_target).split()
    assert "sourced_ran" not in tables
    if "loot" in tables:
        assert mariadb_server.sql("SELECT count(*) FROM `%s`.loot" % my_target).strip() == "0"
    check = restore_latest(run_module, root, "shop", my_conn(mariadb_server, my_target), _check_mode=True, force=True)
    assert check.rc == 0, check.describe()
    assert {"--binary-mode", "--sandbox", "--local-infile=0"} <= set(check.result["command"])  # 10.11 has --sandbox


# -- tar: confined extraction ------------------------------------------------------------------------------

def tar_bytes(members):
    """members: (name, kind, data) with kind file | dir | symlink | hardlink | fifo; data the link target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE}[kind]
            info.mode = 0o755 if kind == "dir" else 0o644
            info.linkname = data or ""
            tar.addfile(info)
    return buf.getvalue()


def escape_link(extract_dir, outside):
    """``a/a/.../a/../../...<outside>``: inside the tree as text while ``a`` does not exist, ``outside`` once a
    later member makes ``a`` a link to ``.``."""
    depth = len(Path(extract_dir).parts) - 1
    return "/".join(["a"] * depth + [".."] * depth) + str(outside)


def snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.lstat().st_ino, p.lstat().st_size) for p in Path(folder).rglob("*"))


def files_restore(run_module, root, target, **extra):
    return restore_latest(run_module, root, "tree", dict(engine="files", path=str(target)), **extra)


def assert_nothing_escaped(tmp_path, outside, before, secret, target):
    assert snapshot(outside) == before, "something was written outside the target"
    assert not target.exists(), "the target should be left as it was (absent)"
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink() and path != secret and outside not in path.parents:
            assert os.stat(path).st_ino != os.stat(secret).st_ino, "%s is the host's secret file" % path


@pytest.fixture
def outside(tmp_path, secret):
    """A folder outside every restore target, holding the host's secret."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "keep.txt").write_text("outside\n")
    os.link(secret, folder / "secret")
    return folder


def plant_tree(root, members):
    plant_backup(root, "tree", tar_bytes(members), engine="files", fmt="tar")


@pytest.mark.parametrize("attack", ["late-link-escape", "hard-link-through-late-link", "write-through-late-link",
                                    "write-through-earlier-link"])
def test_files_restore_never_leaves_its_target(run_module, tmp_path, outside, secret, attack):
    work = tmp_path / "work"
    work.mkdir()
    target = work / "restored"
    esc = escape_link(target, outside)
    members = {
        # esc is inside while a does not exist; a -> . makes it point at `outside`
        "late-link-escape": [("esc", "symlink", esc), ("a", "symlink", ".")],
        "hard-link-through-late-link": [("esc", "symlink", esc), ("a", "symlink", "."),
                                        ("stolen", "hardlink", "esc/secret")],
        "write-through-late-link": [("esc", "symlink", esc), ("a", "symlink", "."),
                                    ("esc/pwned", "file", b"owned")],
        "write-through-earlier-link": [("d", "dir", None), ("d/up", "symlink", ".."), ("d/up/d/x", "file", b"x")],
    }[attack]
    root = tmp_path / "store"
    plant_tree(root, members)
    verify_deep(run_module, root, "tree")
    before = snapshot(outside)

    res = files_restore(run_module, root, target)
    assert res.failed, res.describe()
    assert "refused" in res.msg and "the target was left as it was" in res.msg, res.msg
    assert_nothing_escaped(tmp_path, outside, before, secret, target)
    assert os.listdir(work) == []


def pg_directory_archive(pg_server, database, tmp_path, tamper):
    """A real directory-format dump of ``database`` as a tar, its data file replaced by ``tamper(name)``."""
    dump_dir = tmp_path / "pgdir"
    subprocess.run([pg_server.tool("pg_dump"), "-Fd", "--compress=0", "-f", str(dump_dir), "-h", pg_server.host,
                    "-p", str(pg_server.port), "-U", pg_server.user, "-d", database],
                   env=pg_server.client_env(), check=True)
    data_files = sorted(name for name in os.listdir(dump_dir) if name.endswith(".dat") and name != "toc.dat")
    assert len(data_files) == 1, data_files
    members = [("toc.dat", "file", (dump_dir / "toc.dat").read_bytes())]
    members += tamper(data_files[0])
    return tar_bytes(members)


@pytest.mark.parametrize("attack", ["data-file-symlink", "data-file-late-link", "data-file-hard-link"])
def test_pg_directory_archive_never_makes_pg_restore_read_a_host_file(run_module, pg_server, pg_database, pg_target,
                                                                      tmp_path, outside, secret, attack):
    pg_server.psql("CREATE TABLE loot (line text); INSERT INTO loot VALUES ('real row')", dbname=pg_database)
    spool = tmp_path / "spool"
    spool.mkdir()
    workdir_depth_probe = spool / "x"  # the archive is extracted into <spool>/<private folder>
    esc = escape_link(workdir_depth_probe, outside)

    def tamper(data_file):
        return {
            "data-file-symlink": [(data_file, "symlink", "../" * 40 + str(secret).lstrip("/"))],
            # the data file is made while esc still points inside, then a -> . turns esc outward
            "data-file-late-link": [("esc", "symlink", esc), (data_file, "symlink", "esc/secret"),
                                    ("a", "symlink", ".")],
            "data-file-hard-link": [("esc", "symlink", esc), ("a", "symlink", "."),
                                    (data_file, "hardlink", "esc/secret")],
        }[attack]

    root = tmp_path / "store"
    plant_backup(root, "loot", pg_directory_archive(pg_server, pg_database, tmp_path, tamper), engine="postgresql",
                 fmt="directory")
    before = snapshot(outside)
    res = restore_latest(run_module, root, "loot", pg_conn(pg_server, pg_target), create_database=True,
                         spool_dir=str(spool))
    assert res.failed, res.describe()
    assert "refused" in res.msg, res.msg
    loaded = pg_server.psql("SELECT count(*) FROM pg_class WHERE relname = 'loot'", dbname=pg_target)
    if loaded == "1":
        assert "TOPSECRET" not in pg_server.psql("SELECT string_agg(line, ',') FROM loot", dbname=pg_target)
    assert snapshot(outside) == before and os.listdir(spool) == []


def planted_at(planted):
    return datetime.datetime.strptime(planted.record["started"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)


def test_decompression_bomb_stops_at_max_restore_size(run_module, tmp_path):
    """64 MiB of zeros, a few KiB stored; the manifest understates raw_size, so the cap catches the stream
    itself. The target is left as it was."""
    root = tmp_path / "store"
    bomb = tar_bytes([("zeros.bin", "file", b"\0" * (64 * 1024 * 1024))])
    planted = plant_backup(root, "tree", bomb, engine="files", fmt="tar", fields=dict(raw_size=1024))
    assert planted.record["stored_size"] < 1024 * 1024
    target = tmp_path / "restored"
    res = files_restore(run_module, root, target, max_restore_size="10M")
    assert res.failed and "max_restore_size" in res.msg and "10485760 bytes" in res.msg, res.describe()
    assert not target.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    plant_backup(root, "tree", bomb, engine="files", fmt="tar", started=planted_at(planted))  # raw_size honest now
    res = files_restore(run_module, root, target, max_restore_size="10M")
    assert res.failed and "manifest says it expands to %d bytes" % len(bomb) in res.msg, res.describe()

    ok = files_restore(run_module, root, target, max_restore_size="1G")
    assert ok.rc == 0, ok.describe()
    assert (target / "zeros.bin").stat().st_size == 64 * 1024 * 1024


def test_decompression_bomb_into_a_database_stops_at_max_restore_size(run_module, pg_server, pg_target, tmp_path):
    root = tmp_path / "store"
    rows = "".join("%d\n" % i for i in range(2000000))
    payload = PG_HEAD + "COPY planted (id) FROM stdin;\n" + rows + "\\.\n" + PG_FOOT
    plant_backup(root, "orders", payload.encode(), engine="postgresql", fmt="plain", fields=dict(raw_size=100))
    res = restore_latest(run_module, root, "orders", pg_conn(pg_server, pg_target), create_database=True,
                         single_transaction=True, max_restore_size="1M")
    assert res.failed and "more than max_restore_size (1048576 bytes)" in res.msg, res.describe()
    assert pg_server.psql("SELECT count(*) FROM pg_class WHERE relname = 'planted'", dbname=pg_target) == "0"


# -- owners and setuid/setgid bits --------------------------------------------------------------------------

def owned_tree():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode, uid in (("tool", 0o4755, 0), ("shared", 0o2775, 1234), ("plain.txt", 0o640, 4321)):
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.size = mode, uid, uid + 1, 2
            info.uname = info.gname = "someone-else"  # names are not looked up: the numbers are restored
            tar.addfile(info, io.BytesIO(b"x\n"))
    return buf.getvalue()


@pytest.mark.skipif(os.geteuid() != 0, reason="restoring owners needs root")
@pytest.mark.parametrize("preserve_owner", [None, True, False])
def test_owners_and_setid_bits(run_module, tmp_path, preserve_owner):
    """A planted (unsigned) backup restored by root gets its owners, never its setuid/setgid bits."""
    root = tmp_path / "store"
    plant_backup(root, "tree", owned_tree(), engine="files", fmt="tar")
    target = tmp_path / "restored"
    extra = {} if preserve_owner is None else dict(preserve_owner=preserve_owner)
    res = files_restore(run_module, root, target, **extra)
    assert res.rc == 0, res.describe()
    info = {name: os.lstat(target / name) for name in ("tool", "shared", "plain.txt")}
    warnings = " ".join(res.warnings)
    assert stat.S_IMODE(info["tool"].st_mode) == 0o755 and stat.S_IMODE(info["shared"].st_mode) == 0o775
    assert "setuid/setgid bits dropped" in warnings and "tool" in warnings and "shared" in warnings, warnings
    if preserve_owner is False:
        assert {(s.st_uid, s.st_gid) for s in info.values()} == {(0, 0)}
    else:  # root restores owners by default
        assert (info["tool"].st_uid, info["shared"].st_uid, info["plain.txt"].st_uid) == (0, 1234, 4321)
        assert (info["shared"].st_gid, info["plain.txt"].st_gid) == (1235, 4322)
        assert "not signed by the job's key" in warnings, warnings
    assert stat.S_IMODE(info["plain.txt"].st_mode) == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="restoring owners needs root")
def test_a_signed_files_backup_keeps_owners_and_setid_bits(run_module, tmp_path):
    signing = {"key": "setid-signing-key-" + "k" * 24}
    source = tmp_path / "src"
    source.mkdir()
    (source / "tool").write_text("x\n")
    os.chown(source / "tool", 0, 0)
    os.chmod(source / "tool", 0o4755)
    (source / "data").write_text("y\n")
    os.chown(source / "data", 1234, 1235)
    storage = dict(type="local", path=str(tmp_path / "store"))
    res = run_module("dump", dict(job="tree", source=dict(engine="files", path=str(source)), storage=storage,
                                  signing=signing))
    assert res.rc == 0, res.describe()
    target = tmp_path / "restored"
    res = run_module("restore", dict(job="tree", latest=True, storage=storage, signing=signing,
                                     target=dict(engine="files", path=str(target))))
    assert res.rc == 0, res.describe()
    assert stat.S_IMODE(os.lstat(target / "tool").st_mode) == 0o4755
    assert (os.lstat(target / "data").st_uid, os.lstat(target / "data").st_gid) == (1234, 1235)
    assert any("restored with their setuid/setgid bits" in w and "tool" in w for w in res.warnings)
