"""Split artifacts (max_chunk_size): the chunks concatenate to the artifact, the manifest lists each
with its SHA-256, and verify, restore and prune treat them as one backup, on every storage type."""

import hashlib
import json
import os
import signal
import sqlite3
import time
import uuid

import pytest

from engine_helpers import start_module, stored_files, wait_for_child

MB = 1024 * 1024


def make_sqlite(path, blobs=7):
    """About 3.5 MB that does not compress: random blobs."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
    conn.executemany("INSERT INTO blobs (data) VALUES (?)", [(os.urandom(MB // 2),) for _ in range(blobs)])
    conn.commit()
    conn.close()


def rows(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, hex(data) FROM blobs ORDER BY id").fetchall()
    finally:
        conn.close()


def chunked_backup(run_module, tmp_path, storage, size="1M"):
    db = tmp_path / "app.sqlite3"
    if not db.exists():
        make_sqlite(db)
    res = run_module("dump", dict(job="app", source=dict(engine="sqlite", path=str(db)), storage=storage,
                                  compression="none", max_chunk_size=size))
    assert res.rc == 0, res.describe()
    return db, res.result


def test_local_chunks_concatenate_to_the_artifact(run_module, tmp_path):
    root = str(tmp_path / "store")
    db, result = chunked_backup(run_module, tmp_path, dict(path=root))
    record = result["manifest"]
    chunks = record["chunks"]
    assert len(chunks) == 4 and [c["size"] for c in chunks[:3]] == [MB] * 3 and 0 < chunks[3]["size"] <= MB
    assert [c["key"] for c in chunks] == ["%s.part%04d" % (record["artifact"], i) for i in range(1, 5)]
    assert not os.path.exists(os.path.join(root, record["artifact"]))  # only the chunks are stored
    whole = hashlib.sha256()
    for chunk in chunks:
        with open(os.path.join(root, chunk["key"]), "rb") as handle:
            data = handle.read()
        assert hashlib.sha256(data).hexdigest() == chunk["sha256"] and len(data) == chunk["size"]
        whole.update(data)
    assert whole.hexdigest() == record["sha256"]
    assert record["stored_size"] == sum(c["size"] for c in chunks)
    with open(os.path.join(root, result["manifest_key"])) as handle:
        assert json.load(handle)["chunks"] == chunks

    target = tmp_path / "restored.sqlite3"
    res = run_module("restore", dict(manifest_key=result["manifest_key"], storage=dict(path=root),
                                     target=dict(engine="sqlite", path=str(target))))
    assert res.rc == 0, res.describe()
    assert res.result["bytes_read"] == record["stored_size"]
    assert rows(target) == rows(db)


@pytest.mark.parametrize("kind", ["s3", "sftp"])
def test_chunked_round_trip_over_s3_and_sftp(run_module, tmp_path, kind, request):
    if kind == "s3":
        storage = request.getfixturevalue("s3_storage_params")(request.getfixturevalue("s3_bucket"))
    else:
        storage = request.getfixturevalue("sftp_storage_params")
    db, result = chunked_backup(run_module, tmp_path, storage)
    assert len(result["manifest"]["chunks"]) == 4
    assert run_module("verify", dict(manifest_key=result["manifest_key"], storage=storage)).rc == 0
    target = tmp_path / "restored.sqlite3"
    res = run_module("restore", dict(job="app", latest=True, storage=storage,
                                     target=dict(engine="sqlite", path=str(target))))
    assert res.rc == 0, res.describe()
    assert rows(target) == rows(db)


def test_verify_names_the_bad_or_missing_chunk_and_restore_refuses(run_module, tmp_path):
    root = str(tmp_path / "store")
    _, result = chunked_backup(run_module, tmp_path, dict(path=root))
    chunks = result["manifest"]["chunks"]
    with open(os.path.join(root, chunks[1]["key"]), "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 1]))
    res = run_module("verify", dict(manifest_key=result["manifest_key"], storage=dict(path=root)))
    assert res.failed and "chunk %s has SHA-256" % chunks[1]["key"] in res.msg
    target = tmp_path / "restored.sqlite3"
    res = run_module("restore", dict(manifest_key=result["manifest_key"], storage=dict(path=root),
                                     target=dict(engine="sqlite", path=str(target))))
    assert res.failed and chunks[1]["key"] in res.msg
    assert not target.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".restored")]

    os.unlink(os.path.join(root, chunks[2]["key"]))
    res = run_module("verify", dict(manifest_key=result["manifest_key"], storage=dict(path=root)))
    assert res.failed and "chunk %s is missing" % chunks[2]["key"] in res.msg


def test_prune_deletes_every_chunk_of_an_old_backup(run_module, tmp_path):
    root = str(tmp_path / "store")
    _, old = chunked_backup(run_module, tmp_path, dict(path=root))
    time.sleep(1.1)  # backups are named by the second
    _, new = chunked_backup(run_module, tmp_path, dict(path=root))
    res = run_module("prune", dict(job="app", storage=dict(path=root), retention=dict(keep_last=1),
                                   max_delete_fraction=1.0))
    assert res.rc == 0, res.describe()
    assert [d["manifest_key"] for d in res.result["deleted"]] == [old["manifest_key"]]
    left = set(stored_files(root))
    assert not any(c["key"] in left for c in old["manifest"]["chunks"])
    assert {c["key"] for c in new["manifest"]["chunks"]} | {new["manifest_key"]} <= left


@pytest.mark.parametrize("size,message", [
    ("100K", "at least 1M"),
    ("lots", "a number of bytes or a size like 512M"),
])
def test_bad_chunk_sizes_are_refused(run_module, tmp_path, size, message):
    db = tmp_path / "app.sqlite3"
    make_sqlite(db, blobs=1)
    res = run_module("dump", dict(job="app", source=dict(engine="sqlite", path=str(db)),
                                  storage=dict(path=str(tmp_path / "store")), max_chunk_size=size))
    assert res.failed and message in res.msg
    assert not (tmp_path / "store").exists()


def test_a_dump_killed_after_some_chunks_leaves_none(pg_server, tmp_path):
    name = "chunky_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    try:
        pg_server.psql("CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS t "
                       "FROM generate_series(1, 600000) g", dbname=name)
        storage = tmp_path / "store"
        source = dict(engine="postgresql", host=pg_server.host, port=pg_server.port, user=pg_server.user,
                      password=pg_server.password, database=name)
        proc = start_module("dump", dict(job="chunky", source=source, storage=dict(path=str(storage)),
                                         compression="none", max_chunk_size="1M"), tmp_path)
        pid = wait_for_child(proc.pid, "pg_dump", argv_contains=b"--format=custom")
        deadline = time.monotonic() + 60
        while not any(f.endswith(".part0002") for f in stored_files(str(storage))):
            assert time.monotonic() < deadline, "no chunk was stored"
            time.sleep(0.01)
        os.kill(pid, signal.SIGSTOP)  # hold it while the chunks are listed
        assert any(f.endswith(".part0001") for f in stored_files(str(storage)))
        os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 1, out
        assert b"pg_dump was killed by signal 9" in out
        assert [f for f in stored_files(str(storage)) if not f.endswith("last-attempt.json")] == []
    finally:
        pg_server.drop_database(name)


def test_docs_join_chunks_with_stock_tools_then_load(run_module, tmp_path):
    from tests.integration.test_restore_docs import run_doc

    root = str(tmp_path / "store")
    db = tmp_path / "app.sqlite3"
    make_sqlite(db)
    res = run_module("dump", dict(job="app-db", source=dict(engine="sqlite", path=str(db)),
                                  storage=dict(path=root, prefix="prod"), max_chunk_size="1M"))
    assert res.rc == 0, res.describe()
    assert len(res.result["manifest"]["chunks"]) >= 2
    target = tmp_path / "restored.sqlite3"
    out = run_doc(["fetch-local-chunks", "load-sqlite"],
                  dict(BACKUP_ROOT=root, PREFIX="prod", JOB="app-db", TARGET_PATH=target), tmp_path)
    assert out.count(": OK") == len(res.result["manifest"]["chunks"]) + 1
    assert rows(target) == rows(db)
