"""In-process sources: SQLite online copy (under concurrent writes) and tar of a directory."""

import filecmp
import os
import re
import sqlite3
import subprocess
import threading

import pytest

from engine_helpers import check_artifact_matches_manifest, decompress_cmd, decompress_to, stored_files


def make_db(path, journal_mode, groups=2000):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=%s" % journal_mode)
    conn.execute("CREATE TABLE pairs (grp INTEGER, side TEXT, payload TEXT)")
    conn.execute("CREATE INDEX pairs_grp ON pairs(grp)")
    conn.executemany("INSERT INTO pairs VALUES (?, ?, ?)",
                     [(g, s, "p" * 200) for g in range(groups) for s in ("a", "b")])
    conn.commit()
    conn.close()


def sqlite_dump(path):
    return subprocess.run(["sqlite3", path, ".dump"], check=True, stdout=subprocess.PIPE).stdout


def test_sqlite_round_trip_matches_sqlite3_dump(run_module, tmp_path):
    db = str(tmp_path / "app.sqlite3")
    make_db(db, "delete")
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="app-db", source=dict(engine="sqlite", path=db), storage=dict(path=storage)))
    assert res.rc == 0, res.result
    path, manifest = check_artifact_matches_manifest(storage, res.result)
    assert manifest["engine"] == "sqlite" and path.endswith(".sqlite3.zst")
    restored = decompress_to(path, str(tmp_path / "restored.sqlite3"))
    assert sqlite_dump(restored) == sqlite_dump(db)
    assert manifest["table_counts"] == {"pairs": 4000}


def test_sqlite_copy_goes_to_spool_dir_and_sweeps_what_a_killed_run_left(run_module, tmp_path):
    """A SIGKILLed (OOM-killed) run leaves its full-size copy and its -journal (or -wal and -shm: the
    copy of a WAL database is in WAL mode, with newer SQLite libraries) in spool_dir; the next
    copy made there removes them, once their owner is gone and they are a minute old."""
    db = str(tmp_path / "app.sqlite3")
    # 16 MB: the copy lives for a good part of a second, long enough for the watcher below to see it on a
    # loaded machine (a 1 MB copy came and went between two looks in one CI run).
    make_db(db, "wal", groups=40000)
    spool = tmp_path / "spool"
    spool.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = [spool / (".songmetrix-private-%d-sqlite-copy-abc.sqlite3" % dead.pid),
            spool / (".songmetrix-private-%d-sqlite-copy-abc.sqlite3-wal" % dead.pid),
            spool / (".songmetrix-private-%d-sqlite-copy-abc.sqlite3-shm" % dead.pid)]
    for path in left:
        path.write_bytes(b"x" * 4096)
        os.utime(path, (0, 0))
    stale_prefix = ".songmetrix-private-%d-" % dead.pid
    copies = []
    watching = threading.Event()

    def watch():  # the copy is made in spool_dir, named after the module's pid and what it holds
        while not watching.is_set():
            copies.extend(n for n in os.listdir(spool) if not n.startswith(stale_prefix))
            watching.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        res = run_module("dump", dict(job="app-db", source=dict(engine="sqlite", path=db),
                                      storage=dict(path=str(tmp_path / "store")), spool_dir=str(spool)))
    finally:
        watching.set()
        watcher.join()
    assert res.rc == 0, res.result
    assert os.listdir(spool) == []
    assert any(n.endswith(".sqlite3") for n in copies), copies
    named = re.compile(r"\.songmetrix-private-\d+-sqlite-copy-\w+\.sqlite3(-journal|-wal|-shm)?$")
    assert all(named.match(n) for n in copies), copies


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_sqlite_copy_is_consistent_while_another_process_writes(run_module, tmp_path, journal_mode):
    db = str(tmp_path / "busy.sqlite3")
    make_db(db, journal_mode)
    stop = threading.Event()
    # A separate process writes pairs of rows in one transaction each: a consistent copy has only whole pairs.
    writer = subprocess.Popen(["python3", "-c", """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=60)
g = 100000
while True:
    with conn:
        conn.execute("INSERT INTO pairs VALUES (?, 'a', 'w')", (g,))
        time.sleep(0.001)
        conn.execute("INSERT INTO pairs VALUES (?, 'b', 'w')", (g,))
    g += 1
""", db])
    try:
        storage = str(tmp_path / "store")
        for _ in range(3):
            res = run_module("dump", dict(job="busy", kind="manual", source=dict(engine="sqlite", path=db),
                                          storage=dict(path=storage), compression="lz4"))
            assert res.rc == 0, res.result
            path, _ = check_artifact_matches_manifest(storage, res.result)
            copy = decompress_to(path, str(tmp_path / "copy.sqlite3"))
            conn = sqlite3.connect(copy)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            odd = conn.execute("SELECT count(*) FROM (SELECT grp FROM pairs GROUP BY grp HAVING count(*) != 2)")
            assert odd.fetchone()[0] == 0
            # Counted in the copy that was streamed: exact whatever the writer does.
            assert res.result["manifest"]["table_counts"] == {
                "pairs": conn.execute("SELECT count(*) FROM pairs").fetchone()[0]}
            conn.close()
            os.unlink(copy)
            import time
            time.sleep(1.1)  # next backup gets its own second
    finally:
        stop.set()
        writer.kill()
        writer.wait()


def test_sqlite_not_a_database(run_module, tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    storage = tmp_path / "store"
    res = run_module("dump", dict(job="bogus", source=dict(engine="sqlite", path=str(bogus)),
                                  storage=dict(path=str(storage))))
    assert res.rc == 1 and "is not a SQLite 3 database" in res.result["msg"]
    assert not storage.exists()


def build_tree(root):
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "app.conf").write_text("key = value\n")
    os.chmod(str(root / "etc" / "app.conf"), 0o600)
    (root / "data").mkdir()
    (root / "data" / "blob.bin").write_bytes(os.urandom(300000))
    (root / "data" / "ünïcødé name.txt").write_text("unicode\n")
    (root / "data" / "tmp").mkdir()
    (root / "data" / "tmp" / "junk.tmp").write_text("junk\n")
    (root / "logs").mkdir()
    (root / "logs" / "app.log").write_text("log line\n")
    os.symlink("../etc/app.conf", str(root / "data" / "conf-link"))
    os.symlink("/nonexistent/target", str(root / "data" / "dangling"))
    os.link(str(root / "data" / "blob.bin"), str(root / "data" / "blob-hardlink.bin"))
    os.chmod(str(root / "data"), 0o750)


def test_files_round_trip_with_tar(run_module, tmp_path):
    root = tmp_path / "src"
    build_tree(root)
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="files", source=dict(engine="files", path=str(root)),
                                  storage=dict(path=storage), compression="gzip"))
    assert res.rc == 0, res.result
    path, manifest = check_artifact_matches_manifest(storage, res.result)
    assert path.endswith(".tar.gz")
    assert manifest["table_counts"] is None
    out = tmp_path / "out"
    out.mkdir()
    decompress = subprocess.Popen(decompress_cmd(path), stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-p", "-C", str(out)], stdin=decompress.stdout, check=True)
    decompress.stdout.close()
    assert decompress.wait() == 0
    cmp = filecmp.dircmp(str(root), str(out))
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files
    for rel in ("etc/app.conf", "data", "data/blob.bin", "data/ünïcødé name.txt"):
        assert os.lstat(str(root / rel)).st_mode == os.lstat(str(out / rel)).st_mode, rel
    assert filecmp.cmp(str(root / "data" / "blob.bin"), str(out / "data" / "blob.bin"), shallow=False)
    assert os.readlink(str(out / "data" / "conf-link")) == "../etc/app.conf"
    assert os.readlink(str(out / "data" / "dangling")) == "/nonexistent/target"
    assert os.stat(str(out / "data" / "blob-hardlink.bin")).st_ino == os.stat(str(out / "data" / "blob.bin")).st_ino


def test_files_include_exclude(run_module, tmp_path):
    root = tmp_path / "src"
    build_tree(root)
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="files-sel", compression="none", storage=dict(path=storage),
                                  source=dict(engine="files", path=str(root), include=["data", "*.conf"],
                                              exclude=["*.tmp", "tmp", "*.log"])))
    assert res.rc == 0, res.result
    listing = subprocess.run(["tar", "-tf", os.path.join(storage, res.result["artifact"])], check=True,
                             stdout=subprocess.PIPE).stdout.decode().split("\n")
    assert "etc/app.conf" in listing and "data/blob.bin" in listing
    assert not any("tmp" in n or n.endswith(".log") for n in listing)


def test_unreadable_source_dir_fails_before_writing(run_module, tmp_path):
    storage = tmp_path / "store"
    res = run_module("dump", dict(job="files-missing", source=dict(engine="files", path=str(tmp_path / "missing")),
                                  storage=dict(path=str(storage))))
    assert res.rc == 1 and "does not exist or is not a directory" in res.result["msg"]
    assert not storage.exists()


def test_second_run_adds_a_second_backup(run_module, tmp_path):
    root = tmp_path / "src"
    build_tree(root)
    storage = str(tmp_path / "store")
    args = dict(job="twice", source=dict(engine="files", path=str(root)), storage=dict(path=storage))
    first = run_module("dump", args)
    import time
    time.sleep(1.1)
    second = run_module("dump", args)
    assert first.rc == 0 and second.rc == 0
    assert first.result["artifact"] != second.result["artifact"]
    assert len([f for f in stored_files(storage) if f.endswith(".manifest.json")]) == 2


def test_sqlite_table_counts_every_table_and_row_counts_false(run_module, tmp_path):
    db = str(tmp_path / "multi.sqlite3")
    conn = sqlite3.connect(db)
    for statement in ("CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)",
                      'CREATE TABLE "odd ""name""" (x)',
                      "CREATE TABLE empty (x)",
                      "CREATE VIEW a_view AS SELECT * FROM a",
                      "INSERT INTO a (v) VALUES ('1'), ('2'), ('3')",
                      'INSERT INTO "odd ""name""" VALUES (1), (2)'):
        conn.execute(statement)
    conn.commit()
    conn.close()
    storage = str(tmp_path / "store")
    res = run_module("dump", dict(job="multi", source=dict(engine="sqlite", path=db), storage=dict(path=storage)))
    assert res.rc == 0, res.result
    # sqlite_sequence (SQLite's own) and the view are not counted.
    assert res.result["manifest"]["table_counts"] == {"a": 3, 'odd "name"': 2, "empty": 0}
    res = run_module("dump", dict(job="multi-off", source=dict(engine="sqlite", path=db), storage=dict(path=storage),
                                  row_counts=False))
    assert res.rc == 0, res.result
    path, manifest = check_artifact_matches_manifest(storage, res.result)
    assert manifest["table_counts"] is None
