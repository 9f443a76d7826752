"""backup_info and verify on local storage: what counts as a backup, and what verify catches."""

import json
import os
import shutil
import sqlite3
import subprocess

import pytest

from engine_helpers import sha256sum


def make_sqlite(path, rows=500):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [("value %d" % i,) for i in range(rows)])
    conn.commit()
    conn.close()
    return path


def clone_backup(root, result, stamp):
    """Copy a stored backup to another start time (artifact + manifest), as a later backup would be."""
    old_stamp = result["manifest"]["started"].replace("-", "").replace(":", "")

    def day_folder(value):
        return "/%s/%s/%s/" % (value[:4], value[4:6], value[6:8])

    def new_key(key):
        return key.replace(old_stamp, stamp).replace(day_folder(old_stamp), day_folder(stamp))

    manifest = dict(result["manifest"], artifact=new_key(result["artifact"]))
    manifest["started"] = "%s-%s-%sT%s:%s:%sZ" % (
        stamp[:4], stamp[4:6], stamp[6:8], stamp[9:11], stamp[11:13], stamp[13:15])
    target = os.path.join(root, new_key(result["artifact"]))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(os.path.join(root, result["artifact"]), target)
    manifest_key = new_key(result["manifest_key"])
    with open(os.path.join(root, manifest_key), "w") as handle:
        json.dump(manifest, handle)
    return manifest_key, manifest


@pytest.fixture
def sqlite_backup(run_module, tmp_path):
    db = make_sqlite(str(tmp_path / "app.sqlite3"))
    root = str(tmp_path / "store")
    res = run_module("dump", dict(job="app", source=dict(engine="sqlite", path=db),
                                  storage=dict(path=root, prefix="prod")))
    assert res.rc == 0, res.describe()
    return root, res.result


def test_backup_info_lists_manifests_newest_first_and_never_objects_without_one(run_module, sqlite_backup):
    root, first = sqlite_backup
    clone_backup(root, first, "20200101T000000Z")
    newest_key, _ = clone_backup(root, first, "20991231T235959Z")
    # Not backups: an artifact whose manifest is missing, a temp file, a foreign file, a manifest outside the layout.
    orphan = os.path.join(root, "prod/app/2021/05/05/app-20210505T050505Z.sqlite3.zst")
    os.makedirs(os.path.dirname(orphan))
    shutil.copyfile(os.path.join(root, first["artifact"]), orphan)
    open(os.path.join(root, "prod/app/2021/05/05/.app-20210505T060000Z.sqlite3.zst.partial-1"), "w").close()
    open(os.path.join(root, "prod/app/notes.txt"), "w").close()
    os.makedirs(os.path.join(root, "prod/app/elsewhere"))
    shutil.copyfile(os.path.join(root, first["manifest_key"]),
                    os.path.join(root, "prod/app/elsewhere/app-20210101T000000Z.manifest.json"))

    res = run_module("backup_info", dict(job="app", storage=dict(path=root, prefix="prod")))
    assert res.rc == 0, res.describe()
    info = res.result
    assert info["changed"] is False
    assert [b["started"] for b in info["backups"]] == [
        "2099-12-31T23:59:59Z", first["manifest"]["started"], "2020-01-01T00:00:00Z"]
    assert info["latest"]["manifest_key"] == newest_key
    assert info["backups"][1]["objects"] == [first["artifact"]]
    assert info["backups"][1]["stored_size"] == first["manifest"]["stored_size"]
    assert "manifest" not in info["backups"][0]
    assert info["incomplete"] == sorted([
        "prod/app/2021/05/05/.app-20210505T060000Z.sqlite3.zst.partial-1",
        "prod/app/2021/05/05/app-20210505T050505Z.sqlite3.zst",
        "prod/app/elsewhere/app-20210101T000000Z.manifest.json",
        "prod/app/notes.txt",
    ])

    res = run_module("backup_info", dict(job="app", latest=True, details=True, storage=dict(path=root, prefix="prod")))
    assert res.rc == 0 and res.result["count"] == 1 and res.result["total"] == 3
    assert res.result["latest"]["manifest"]["started"] == "2099-12-31T23:59:59Z"

    res = run_module("backup_info", dict(job="app", since="2020-01-01", until="2020-01-01",
                                         storage=dict(path=root, prefix="prod")))
    assert [b["started"] for b in res.result["backups"]] == ["2020-01-01T00:00:00Z"]


def test_backup_info_bad_input_and_empty_job(run_module, sqlite_backup):
    root, _ = sqlite_backup
    res = run_module("backup_info", dict(job="app", since="yesterday", storage=dict(path=root, prefix="prod")))
    assert res.failed and "since 'yesterday' is not an ISO 8601" in res.msg
    res = run_module("backup_info", dict(job="../etc", storage=dict(path=root)))
    assert res.failed and "job name" in res.msg
    res = run_module("backup_info", dict(job="other", storage=dict(path=root, prefix="prod")))
    assert res.rc == 0 and res.result["count"] == 0 and res.result["latest"] is None
    res = run_module("backup_info", dict(storage=dict(path=root, bucket="b")))
    assert res.failed and "bucket do not apply to storage.type local" in res.msg


def test_verify_passes_then_names_each_kind_of_damage(run_module, sqlite_backup):
    root, first = sqlite_backup
    storage = dict(path=root, prefix="prod")
    res = run_module("verify", dict(job="app", storage=storage, deep=True))
    assert res.rc == 0, res.describe()
    assert res.result["verified"] == 1 and res.result["backups"][0]["ok"] is True
    assert res.result["backups"][0]["checked_bytes"] == first["manifest"]["stored_size"]

    flipped_key, _ = clone_backup(root, first, "20200101T000000Z")
    truncated_key, truncated = clone_backup(root, first, "20200102T000000Z")
    missing_key, missing = clone_backup(root, first, "20200103T000000Z")
    edited_key, edited = clone_backup(root, first, "20200104T000000Z")
    escaping_key, escaping = clone_backup(root, first, "20200105T000000Z")

    flipped_path = os.path.join(root, flipped_key.replace(".manifest.json", ".sqlite3.zst"))
    with open(flipped_path, "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0x01]))
    with open(os.path.join(root, truncated["artifact"]), "r+b") as handle:
        handle.truncate(first["manifest"]["stored_size"] - 10)
    os.unlink(os.path.join(root, missing["artifact"]))
    edited["sha256"] = "0" * 64
    escaping["artifact"] = "prod/app/../../../etc/passwd"
    for key, record in ((edited_key, edited), (escaping_key, escaping)):
        with open(os.path.join(root, key), "w") as handle:
            json.dump(record, handle)

    res = run_module("verify", dict(job="app", storage=storage))
    assert res.failed
    by_key = {b["manifest_key"]: b for b in res.result["backups"]}
    assert by_key[first["manifest_key"]]["ok"] is True
    assert "has SHA-256 %s, the manifest says %s" % (sha256sum(flipped_path), first["manifest"]["sha256"]) in \
        by_key[flipped_key]["problem"]
    assert "bytes, the manifest says %d" % first["manifest"]["stored_size"] in by_key[truncated_key]["problem"]
    assert by_key[missing_key]["problem"] == "artifact %s is missing" % missing["artifact"]
    assert "the manifest says %s" % ("0" * 64) in by_key[edited_key]["problem"]
    assert "outside its own backup" in by_key[escaping_key]["problem"]
    assert res.result["bad"] == 5 and res.result["verified"] == 1
    assert "5 of 6 backup(s) failed verification" in res.msg

    res = run_module("verify", dict(manifest_key=first["manifest_key"], storage=storage), check_mode=True)
    assert res.rc == 0 and res.result["verified"] == 1, res.describe()
    res = run_module("verify", dict(job="app", limit=1, storage=storage))
    assert res.rc == 0 and [b["manifest_key"] for b in res.result["backups"]] == [first["manifest_key"]]


def test_verify_no_backups_is_a_failure(run_module, tmp_path):
    res = run_module("verify", dict(job="never-ran", storage=dict(path=str(tmp_path))))
    assert res.failed and "no backups of job never-ran found in %s/never-ran/" % tmp_path in res.msg


def test_deep_verify_catches_a_cut_dump_that_hashes_fine(run_module, tmp_path, sqlite_backup):
    """A stored stream whose bytes match the manifest but whose content is cut: only deep finds it."""
    root, first = sqlite_backup
    key, record = clone_backup(root, first, "20200101T000000Z")
    artifact = os.path.join(root, record["artifact"])
    raw = subprocess.run(["zstd", "-dc", artifact], check=True, stdout=subprocess.PIPE).stdout
    cut = subprocess.run(["zstd", "-q", "-c"], input=b"not a database" + raw[20:], check=True,
                         stdout=subprocess.PIPE).stdout
    with open(artifact, "wb") as handle:
        handle.write(cut)
    record.update(sha256=sha256sum(artifact), stored_size=len(cut))
    with open(os.path.join(root, key), "w") as handle:
        json.dump(record, handle)
    storage = dict(path=root, prefix="prod")
    assert run_module("verify", dict(manifest_key=key, storage=storage)).rc == 0
    res = run_module("verify", dict(manifest_key=key, storage=storage, deep=True))
    assert res.failed and "SQLite database header" in res.result["backups"][0]["problem"], res.describe()


def test_kind_filters_manual_backups(run_module, sqlite_backup, tmp_path):
    root, first = sqlite_backup
    db = make_sqlite(str(tmp_path / "other.sqlite3"), rows=3)
    storage = dict(path=root, prefix="prod")
    manual = run_module("dump", dict(job="app", kind="manual", source=dict(engine="sqlite", path=db), storage=storage))
    assert manual.rc == 0 and "/app/manual/" in manual.result["manifest_key"], manual.describe()

    def listed(**filters):
        res = run_module("backup_info", dict(job="app", storage=storage, **filters))
        assert res.rc == 0, res.describe()
        return [(b["manifest_key"], b["kind"]) for b in res.result["backups"]]

    assert listed(kind="manual") == [(manual.result["manifest_key"], "manual")]
    assert listed(kind="scheduled") == [(first["manifest_key"], "scheduled")]
    assert len(listed()) == 2
    res = run_module("verify", dict(job="app", kind="manual", storage=storage))
    assert res.rc == 0 and [b["manifest_key"] for b in res.result["backups"]] == [manual.result["manifest_key"]]
