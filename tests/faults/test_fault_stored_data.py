"""Stored data faults on every storage type: a flipped byte, a truncated artifact, a missing artifact,
a manifest whose sha256 was edited, a manifest naming an artifact that is not there, a missing
chunk, and a foreign object under the prefix.

verify names each damaged backup and what is wrong with it; restore refuses each before writing
its target; prune never deletes the foreign object (nor any object no manifest names).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils.storage import opened_storage

PREFIX = "prod"
FOREIGN = PREFIX + "/app/2020/01/01/someone-elses-file.bin"


def make_db(path, megabytes=0):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(os.urandom(64 * 1024),) for _ in range(megabytes * 16)]
                     + [(b"row %d" % i,) for i in range(200)])
    conn.commit()
    conn.close()
    return path


def clone(storage, record, manifest_key, stamp):
    """A copy of a stored backup under another start time (its objects and its manifest)."""
    old = record["started"].replace("-", "").replace(":", "")

    def moved(key):
        return key.replace(old, stamp).replace("/%s/%s/%s/" % (old[:4], old[4:6], old[6:8]),
                                               "/%s/%s/%s/" % (stamp[:4], stamp[4:6], stamp[6:8]))

    new = json.loads(json.dumps(record))
    new["artifact"] = moved(record["artifact"])
    new["started"] = "%s-%s-%sT%s:%s:%sZ" % (stamp[:4], stamp[4:6], stamp[6:8], stamp[9:11], stamp[11:13], stamp[13:15])
    for chunk in new.get("chunks") or []:
        chunk["key"] = moved(chunk["key"])
    for old_chunk, chunk in zip(record.get("chunks") or [], new.get("chunks") or [], strict=True):
        storage.put_small(chunk["key"], storage.get_small(old_chunk["key"]))
    if not new.get("chunks"):
        storage.put_small(new["artifact"], storage.get_small(record["artifact"]))
    key = moved(manifest_key)
    storage.put_small(key, json.dumps(new).encode())
    return key, new


def put_manifest(storage, key, record):
    storage.delete(key)
    storage.put_small(key, json.dumps(record).encode())


def replace(storage, key, data):
    storage.delete(key)
    storage.put_small(key, data)


@pytest.fixture(params=["local", "s3", "sftp"])
def storage_params(request, tmp_path):
    if request.param == "local":
        return dict(type="local", path=str(tmp_path / "store"), prefix=PREFIX)
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        return request.getfixturevalue("s3_storage_params")(bucket, prefix=PREFIX)
    return dict(request.getfixturevalue("sftp_storage_params"), prefix=PREFIX)


def test_each_damage_is_named_by_verify_refused_by_restore_and_prune_spares_the_stranger(
        run_module, tmp_path, storage_params):
    big = make_db(str(tmp_path / "big.sqlite3"), megabytes=3)
    chunked = run_module("dump", dict(job="app", source=dict(engine="sqlite", path=big), storage=storage_params,
                                      compression="none", max_chunk_size="1M"))
    assert chunked.rc == 0 and len(chunked.result["manifest"]["chunks"]) >= 3, chunked.describe()
    time.sleep(1.1)  # backups are named by the second
    db = make_db(str(tmp_path / "app.sqlite3"))
    good = run_module("dump", dict(job="app", source=dict(engine="sqlite", path=db), storage=storage_params))
    assert good.rc == 0, good.describe()
    record = good.result["manifest"]
    size = record["stored_size"]
    with opened_storage(storage_params) as storage:
        data = storage.get_small(record["artifact"])
        damaged = {}
        key, r = clone(storage, record, good.result["manifest_key"], "20200101T000000Z")
        flipped = bytearray(data)
        flipped[size // 2] ^= 0x01
        replace(storage, r["artifact"], bytes(flipped))
        damaged[key] = "has SHA-256"
        key, r = clone(storage, record, good.result["manifest_key"], "20200102T000000Z")
        replace(storage, r["artifact"], data[:-10])
        damaged[key] = "%d bytes, the manifest says %d" % (size - 10, size)
        key, r = clone(storage, record, good.result["manifest_key"], "20200103T000000Z")
        storage.delete(r["artifact"])
        damaged[key] = "artifact %s is missing" % r["artifact"]
        key, r = clone(storage, record, good.result["manifest_key"], "20200104T000000Z")
        put_manifest(storage, key, dict(r, sha256="0" * 64))
        damaged[key] = "the manifest says %s" % ("0" * 64)
        key, r = clone(storage, record, good.result["manifest_key"], "20200105T000000Z")
        elsewhere = r["artifact"] + ".gz"  # inside its own backup's name, but nothing was stored there
        put_manifest(storage, key, dict(r, artifact=elsewhere))
        damaged[key] = "artifact %s is missing" % elsewhere
        key, r = clone(storage, chunked.result["manifest"], chunked.result["manifest_key"], "20200106T000000Z")
        storage.delete(r["chunks"][1]["key"])
        damaged[key] = "chunk %s is missing" % r["chunks"][1]["key"]
        storage.put_small(FOREIGN, b"not a backup of ours")

    res = run_module("verify", dict(job="app", storage=storage_params))
    assert res.failed, res.describe()
    by_key = {b["manifest_key"]: b for b in res.result["backups"]}
    for key, problem in damaged.items():
        assert by_key[key]["ok"] is False and problem in by_key[key]["problem"], (key, by_key[key])
    assert by_key[good.result["manifest_key"]]["ok"] is True
    assert by_key[chunked.result["manifest_key"]]["ok"] is True
    assert res.result["bad"] == len(damaged)

    for key in damaged:
        target = tmp_path / ("restored-%s.sqlite3" % key.rsplit("-", 1)[1][:16])
        restored = run_module("restore", dict(manifest_key=key, storage=storage_params,
                                              target=dict(engine="sqlite", path=str(target))))
        assert restored.failed, (key, restored.describe())
        assert not target.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".restored")]

    pruned = run_module("prune", dict(job="app", storage=storage_params, retention=dict(keep_last=1), force=True))
    assert pruned.rc == 0 and len(pruned.result["deleted"]) == len(damaged) + 1, pruned.describe()
    with opened_storage(storage_params) as storage:
        assert storage.get_small(FOREIGN) == b"not a backup of ours"
        assert storage.exists(good.result["manifest_key"])  # the newest good backup
    assert FOREIGN in pruned.result["incomplete"]
