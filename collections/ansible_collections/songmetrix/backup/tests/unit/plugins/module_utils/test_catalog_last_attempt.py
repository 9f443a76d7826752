"""backup_info's last_attempt option: the job's last-attempt record beside its listing."""

import json

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import catalog
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_local import LocalStorage

MANIFEST = "db/2026/11/23/db-20261123T020000Z.manifest.json"


def _params(path, **extra):
    params = {"job": "db", "kind": None, "since": None, "until": None, "latest": False, "limit": None,
              "details": False, "last_attempt": False, "storage": {"type": "local", "path": str(path)}}
    params.update(extra)
    return params


@pytest.fixture
def store(tmp_path):
    local = LocalStorage(str(tmp_path))
    local.put_small(MANIFEST, json.dumps({"job": "db"}).encode())
    local.put_small("db/2026/11/23/db-20261123T020000Z.sqlite3.zst", b"x" * 10)
    return tmp_path, local


def test_without_the_option_nothing_changes(store):
    path, _local = store
    result = catalog.run_backup_info(_params(path))
    assert "last_attempt" not in result and result["count"] == 1


def test_no_record_is_null(store):
    path, _local = store
    result = catalog.run_backup_info(_params(path, last_attempt=True))
    assert result["last_attempt"] is None and result["count"] == 1


def test_record_is_returned_and_not_a_backup(store):
    path, local = store
    record = {"format_version": 1, "job": "db", "status": "failed", "started": "2026-11-23T03:00:00Z",
              "finished": "2026-11-23T03:00:02Z", "manifest_key": None, "error": "boom", "host": "h"}
    local.put_small("db/last-attempt.json", json.dumps(record).encode())
    result = catalog.run_backup_info(_params(path, last_attempt=True))
    unsigned = {"status": "unauthenticated", "key_id": None, "problem": None}
    assert result["last_attempt"] == dict(record, authentication=unsigned)
    assert result["count"] == 1 and result["incomplete"] == []


def test_unreadable_record(store):
    path, local = store
    local.put_small("db/last-attempt.json", b"{not json")
    result = catalog.run_backup_info(_params(path, last_attempt=True))
    assert result["last_attempt"]["status"] == "unreadable"


def test_needs_a_job(store):
    path, _local = store
    with pytest.raises(ValidationError, match="needs a job"):
        catalog.run_backup_info(_params(path, job=None, last_attempt=True))
