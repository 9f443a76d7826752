"""Hostile input: job names, prefixes, database names, table patterns, paths and manifest keys with
'../', spaces, quotes, ';', newlines, '$()', backticks, unicode and very long strings. Each is refused
with a message that names the option, or handled as data: no shell ever runs it (a marker file the
injected command would create never appears) and nothing is written outside the storage.
"""

from __future__ import annotations

import os
import tarfile
import uuid

import pytest


def files_under(root):
    found = []
    for directory, _dirs, files in os.walk(root):
        found += [os.path.relpath(os.path.join(directory, name), root) for name in files]
    return found

MARK = "/tmp/songmetrix-pwned-" + uuid.uuid4().hex[:8]
INJECTIONS = [
    "x; touch %s" % MARK,
    "$(touch %s)" % MARK,
    "`touch %s`" % MARK,
    "x' || touch %s #" % MARK,
    'x" && touch %s "' % MARK,
    "x | touch %s" % MARK,
]


@pytest.fixture(autouse=True)
def no_marker():
    yield
    assert not os.path.exists(MARK), "an injected command ran"


def files_args(tmp_path, **override):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "f.txt").write_text("x")
    args = dict(job="ok", source=dict(engine="files", path=str(src)), storage=dict(path=str(tmp_path / "store")))
    args.update(override)
    return args


@pytest.mark.parametrize("job", ["../up", "a/b", "a b", "a'b", 'a"b', "a;b", "a\nb", "$(id)", "-rf", ".hidden",
                                 "jöb", "x" * 101, *INJECTIONS])
@pytest.mark.parametrize("module", ["dump", "backup_info", "prune"])
def test_hostile_job_names_are_refused(run_module, tmp_path, module, job):
    args = files_args(tmp_path, job=job)
    if module != "dump":
        args.pop("source")
    if module == "prune":
        args["retention"] = dict(keep_last=1)
    res = run_module(module, args)
    assert res.failed and "job name" in res.msg and "is not valid" in res.msg, res.describe()
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("prefix", ["../up", "a/../b", "a/./b", "a b", "a;b", "a\nb", "$(id)", "ü", "x" * 201,
                                    *INJECTIONS])
def test_hostile_prefixes_are_refused(run_module, tmp_path, prefix):
    res = run_module("dump", files_args(tmp_path, storage=dict(path=str(tmp_path / "store"), prefix=prefix)))
    assert res.failed and "storage prefix" in res.msg and "is not valid" in res.msg, res.describe()
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("name", [*INJECTIONS, "a\nb", "x" * 300])
@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_hostile_database_names_are_data_not_commands(request, run_module, tmp_path, engine, name):
    server = request.getfixturevalue("pg_server" if engine == "postgresql" else "mariadb_server")
    source = dict(engine=engine, host=server.host, port=server.port, user=server.user, password=server.password,
                  database=name)
    res = run_module("dump", dict(job="hostile", source=source, storage=dict(path=str(tmp_path / "store"))))
    assert res.failed, res.describe()
    if "\n" in name and engine == "mariadb":
        assert "line breaks" in res.msg, res.msg  # it would end the option file's line
    else:
        assert "does not exist" in res.msg or "Unknown database" in res.msg or "Incorrect database name" in res.msg \
            or "too long" in res.msg, res.msg
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_hostile_table_patterns_run_no_shell(request, run_module, tmp_path, engine):
    server = request.getfixturevalue("pg_server" if engine == "postgresql" else "mariadb_server")
    database = request.getfixturevalue("pg_database" if engine == "postgresql" else "mariadb_database")
    if engine == "postgresql":
        server.psql("CREATE TABLE t (x int)", dbname=database)
    else:
        server.sql("CREATE TABLE t (x int)", database=database)
    source = dict(engine=engine, host=server.host, port=server.port, user=server.user, password=server.password,
                  database=database, include=INJECTIONS[:4], exclude=INJECTIONS[4:])
    res = run_module("dump", dict(job="hostile", source=source, storage=dict(path=str(tmp_path / "store"))))
    # pg_dump refuses patterns that match nothing; mariadb-dump dumps what exists: either way, no shell.
    assert res.rc in (0, 1) and res.result is not None, res.describe()


def test_odd_file_names_are_backed_up_as_they_are(run_module, tmp_path):
    src = tmp_path / "src dir ü"
    src.mkdir()
    odd = ["a b.txt", "q'uote\".txt", "semi;colon.txt", "$(touch %s).txt" % os.path.basename(MARK), "ünï℃ode.txt",
           "line\nbreak.txt", "x" * 200 + ".txt"]
    for name in odd:
        (src / name).write_text(name)
    store = tmp_path / "store"
    res = run_module("dump", dict(job="odd", source=dict(engine="files", path=str(src)), storage=dict(path=str(store)),
                                  compression="none"))
    assert res.rc == 0, res.describe()
    with tarfile.open(os.path.join(store, res.result["artifact"])) as tar:
        members = {m.name.split("/")[-1]: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}
    assert members == {name: name for name in odd}
    assert all(p.startswith("odd/") for p in files_under(str(store)))


# The injections of INJECTIONS without a '/': a shell running one would touch PWNED in its cwd.
PATH_PIECES = [text.replace(MARK, "PWNED") for text in INJECTIONS] + ["a b", "ünï℃ode", "x" * 200]


@pytest.mark.parametrize("dotdot", [False, True], ids=["plain", "via-up-dotdot"])
@pytest.mark.parametrize("piece", PATH_PIECES)
def test_hostile_paths_are_data_round_trip(run_module, tmp_path, piece, dotdot):
    """Source, storage and restore paths with shell metacharacters, '..' parts and long names: the
    backup and its restore go exactly where the path says, and no shell runs any of it."""
    base = tmp_path / "base"
    (base / "up").mkdir(parents=True)
    where = base / "up" / ".." if dotdot else base
    src, store, target = (where / (role + " " + piece) for role in ("src", "store", "restored"))
    src.mkdir()
    (src / "f.txt").write_text(piece)
    res = run_module("dump", dict(job="paths", source=dict(engine="files", path=str(src)),
                                  storage=dict(path=str(store))), cwd=base)
    assert res.rc == 0, res.describe()
    assert os.path.isfile(os.path.join(str(store), res.result["manifest_key"]))
    restored = run_module("restore", dict(manifest_key=res.result["manifest_key"], storage=dict(path=str(store)),
                                          target=dict(engine="files", path=str(target))), cwd=base)
    assert restored.rc == 0, restored.describe()
    assert (base / ("restored " + piece) / "f.txt").read_text() == piece
    # Exactly what the paths name, '..' resolved, and no PWNED file from a shell.
    assert sorted(os.listdir(base)) == sorted(["up", "src " + piece, "store " + piece, "restored " + piece])
    assert os.listdir(base / "up") == []


@pytest.mark.parametrize("path", ["relative/store", "/tmp/a\nb", "/tmp/nul\x00byte"])
def test_storage_paths_that_cannot_be_meant_are_refused(run_module, tmp_path, path):
    res = run_module("dump", files_args(tmp_path, storage=dict(path=path)))
    assert res.failed and "storage.path" in res.msg, res.describe()
    assert not os.path.exists("relative")


@pytest.mark.parametrize("key", [
    "../../etc/passwd",
    "/etc/passwd",
    "app/../../outside/app-20260101T000000Z.manifest.json",
    "app/2026/01/01/app-20260101T000000Z.manifest.json\n",
    "app/2026/01/01/app-20260101T000000Z.sqlite3.zst",  # not a manifest
])
@pytest.mark.parametrize("module", ["restore", "verify"])
def test_path_traversing_manifest_keys_are_refused(run_module, tmp_path, module, key):
    store = tmp_path / "store"
    store.mkdir()
    args = dict(manifest_key=key, storage=dict(path=str(store)))
    if module == "restore":
        args["target"] = dict(engine="sqlite", path=str(tmp_path / "out.sqlite3"))
    res = run_module(module, args)
    assert res.failed, res.describe()
    assert "manifest" in res.msg.lower(), res.msg
    assert not (tmp_path / "out.sqlite3").exists()
