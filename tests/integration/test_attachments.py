"""Attachments: objects stored beside a backup's artifact that are not part of its stream (stripes of a
SQL Server backup to URL, the extra artifacts of a Supabase backup). verify checks each one, prune
deletes them with their backup and only them, and a manifest may not name one outside its backup."""

import hashlib
import json
import os
import time

from test_info_verify_local import make_sqlite


def attach(root, result, suffix, data):
    """Store ``data`` beside the backup as <stem>.<suffix> and name it in the manifest's attachments."""
    stem = result["manifest_key"][: -len(".manifest.json")]
    key = "%s.%s" % (stem, suffix)
    with open(os.path.join(root, key), "wb") as handle:
        handle.write(data)
    path = os.path.join(root, result["manifest_key"])
    with open(path) as handle:
        record = json.load(handle)
    record.setdefault("attachments", []).append(
        {"key": key, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "role": "stripe"})
    with open(path, "w") as handle:
        json.dump(record, handle)
    return key


def backup_with_attachments(run_module, tmp_path, root, name="app"):
    db = str(tmp_path / (name + ".sqlite3"))
    if not os.path.exists(db):
        make_sqlite(db)
    res = run_module("dump", dict(job="app", source=dict(engine="sqlite", path=db), storage=dict(path=root)))
    assert res.rc == 0, res.describe()
    keys = [attach(root, res.result, "stripe2of3.bak", b"second stripe " * 1000),
            attach(root, res.result, "stripe3of3.bak", b"third stripe " * 1000)]
    return res.result, keys


def verify(run_module, root, key):
    return run_module("verify", dict(manifest_key=key, storage=dict(path=root)))


def test_verify_reads_every_attachment_and_names_the_bad_one(run_module, tmp_path):
    root = str(tmp_path / "store")
    result, keys = backup_with_attachments(run_module, tmp_path, root)
    ok = verify(run_module, root, result["manifest_key"])
    assert ok.rc == 0, ok.describe()
    checked = ok.result["backups"][0]["checked_bytes"]
    assert checked == result["manifest"]["stored_size"] + sum(os.path.getsize(os.path.join(root, k)) for k in keys)

    with open(os.path.join(root, keys[1]), "r+b") as handle:
        handle.seek(100)
        handle.write(b"X")
    bad = verify(run_module, root, result["manifest_key"])
    assert bad.failed
    assert "attachment %s has SHA-256" % keys[1] in bad.msg

    os.unlink(os.path.join(root, keys[0]))
    gone = verify(run_module, root, result["manifest_key"])
    assert gone.failed
    assert "attachment %s is missing" % keys[0] in gone.msg


def test_an_attachment_outside_the_backup_is_refused(run_module, tmp_path):
    root = str(tmp_path / "store")
    result, _ = backup_with_attachments(run_module, tmp_path, root)
    path = os.path.join(root, result["manifest_key"])
    with open(path) as handle:
        record = json.load(handle)
    record["attachments"][0]["key"] = "app/other-job.bak"
    with open(path, "w") as handle:
        json.dump(record, handle)
    res = verify(run_module, root, result["manifest_key"])
    assert res.failed
    assert "outside its own backup" in res.msg


def test_prune_deletes_attachments_with_their_backup_and_nothing_else(run_module, tmp_path):
    root = str(tmp_path / "store")
    old, old_keys = backup_with_attachments(run_module, tmp_path, root)
    time.sleep(1.1)  # backups are named by the second
    new, new_keys = backup_with_attachments(run_module, tmp_path, root)
    stray = os.path.join(os.path.dirname(os.path.join(root, old["manifest_key"])), "app-foreign.bak")
    with open(stray, "wb") as handle:
        handle.write(b"not ours")
    res = run_module("prune", dict(job="app", storage=dict(path=root), retention=dict(keep_last=1),
                                   max_delete_fraction=1.0))
    assert res.rc == 0, res.describe()
    assert [d["manifest_key"] for d in res.result["deleted"]] == [old["manifest_key"]]
    assert sorted(res.result["deleted"][0]["objects"]) == sorted([old["artifact"]] + old_keys)
    for key in [old["manifest_key"], old["artifact"]] + old_keys:
        assert not os.path.exists(os.path.join(root, key)), key
    for key in [new["manifest_key"], new["artifact"]] + new_keys:
        assert os.path.exists(os.path.join(root, key)), key
    assert os.path.exists(stray)
