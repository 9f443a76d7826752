"""Helpers shared by the fault-injection tests (tests/faults): job history, and what a failed run must leave."""

from __future__ import annotations

import datetime
import json
import os

from tests.history import make_history

UTC = datetime.timezone.utc


def days_back(count, hour=2):
    """``count`` daily stamps at ``hour`` UTC up to yesterday, newest first."""
    base = datetime.datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return [base - datetime.timedelta(days=n) for n in range(1, count + 1)]


def seed_history(storage, job, count=4, prefix=""):
    """``count`` earlier good backups of ``job``: a failed run then has something to protect."""
    return make_history(storage, prefix, job, days_back(count))


def files_under(root):
    """Every file under a local directory, relative to it (hidden temp files included)."""
    found = []
    for directory, _dirs, files in os.walk(root):
        found += [os.path.relpath(os.path.join(directory, name), root) for name in files]
    return sorted(found)


def assert_failed_run_left_no_backup(run_module, storage, job, history, error_words=()):
    """What a failed run of a job with history must leave: the same backups, no partial object, a
    'failed' last-attempt record naming the cause, and a prune that deletes nothing."""
    info = run_module("backup_info", dict(job=job, storage=storage))
    assert info.rc == 0, info.describe()
    assert sorted(b["manifest_key"] for b in info.result["backups"]) == sorted(b.manifest_key for b in history)
    assert info.result["incomplete"] == [], info.result["incomplete"]
    record = last_attempt(storage, job)
    assert record is not None and record["status"] == "failed", record
    for word in error_words:
        assert word in record["error"], (word, record["error"])
    prune = run_module("prune", dict(job=job, storage=storage, retention=dict(keep_last=1), force=True))
    assert prune.rc == 0, prune.describe()
    assert prune.result["deleted"] == [] and prune.result["changed"] is False
    assert "did not succeed" in (prune.result["stopped"] or ""), prune.result
    assert len(prune.result["would_delete"]) == len(history) - 1
    after = run_module("backup_info", dict(job=job, storage=storage))
    assert after.result["count"] == len(history)


def last_attempt(storage, job):
    from ansible_collections.songmetrix.backup.plugins.module_utils.attempts import read_last
    from ansible_collections.songmetrix.backup.plugins.module_utils.storage import opened_storage
    from ansible_collections.songmetrix.backup.plugins.module_utils.validation import storage_prefix

    with opened_storage(storage) as opened:
        return read_last(opened, storage_prefix(storage.get("prefix")), job)


def read_json(path):
    with open(path) as handle:
        return json.load(handle)
