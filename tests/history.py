"""Make a history of backups in a storage, quickly: tiny artifacts with their manifests, as dump writes them.

    from tests.history import make_history
    backups = make_history(storage, "prod", "app", stamps)            # a storage object
    backups = make_history(storage_params, "prod", "app", stamps)     # or a `storage` dict

For each stamp (an aware UTC datetime) it stores ``<stem>.sql.gz`` (a real gzip member, a few
dozen bytes, different for every stamp) and then ``<stem>.manifest.json`` (build_manifest's
fields: job, kind, started, artifact, stored_size = the artifact's length, sha256, compression
gzip, ...), keys from layout.py; the manifest is written after its artifact, as dump does.
Returns one HistoryBackup per stamp, in the order of ``stamps``.

Writes go through the storage's own put_small (S3: its put_object, without put_small's HEAD), in a
thread pool:
- a storage dict: every worker thread makes its own storage (make_storage) and closes it after;
- a storage object: shared by the threads where that is safe (S3: one boto3 client, which is
  thread-safe; local: files of distinct names), used from this thread alone otherwise (SFTP: one
  paramiko session that reconnects on its own). Pass the dict for a fast SFTP history.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace

from ansible_collections.songmetrix.backup.plugins.module_utils import layout, manifest
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import make_storage

__all__ = ["HistoryBackup", "make_history"]

EXTENSION = "sql.gz"
# At most this many threads: S3Storage's connection pool holds max(10, max_concurrency + 2).
WORKERS = 8
THREAD_SAFE_TYPES = ("s3", "local")


@dataclass(frozen=True)
class HistoryBackup:
    started: datetime  # aware, UTC
    kind: str
    stem: str
    artifact_key: str
    manifest_key: str
    stored_size: int
    sha256: str


def artifact_bytes(job, kind, started):
    """A small gzip member (mtime 0, so the same stamp always gives the same bytes)."""
    text = "-- %s %s backup started %s\n" % (job, kind, layout.iso_utc(started))
    return gzip.compress(text.encode(), mtime=0)


def _record(job, kind, started, artifact_key, data):
    source = SimpleNamespace(engine="postgresql", database=job, format="plain", extension="sql",
                             tool_version="pg_dump (PostgreSQL) 16.0", server_version="16.0")
    stream = SimpleNamespace(raw_size=len(gzip.decompress(data)), stored_size=len(data),
                             sha256=hashlib.sha256(data).hexdigest())
    return manifest.build_manifest(job, kind, "UTC", source, artifact_key, started, started, "gzip", stream)


def _put(storage, key, data, metadata):
    if storage.type == "s3" and hasattr(storage, "put_object"):
        # S3Storage.put_small is a HeadObject (exists) and then this very PutObject (If-None-Match,
        # checksum, object arguments); the keys are new, so the HEAD is skipped: half the requests.
        storage.put_object(key, data, storage.object_args(metadata))
    else:
        storage.put_small(key, data, metadata)


def _store_one(storage, prefix, job, kind, started):
    if started.tzinfo is None or started.utcoffset() is None:
        raise ValueError("make_history needs aware datetimes, not %r" % (started,))
    started = started.astimezone(timezone.utc).replace(microsecond=0)
    stem = layout.backup_stem(prefix, job, kind, started)
    artifact = layout.artifact_key(stem, EXTENSION)
    data = artifact_bytes(job, kind, started)
    record = _record(job, kind, started, artifact, data)
    metadata = manifest.object_metadata(record)
    _put(storage, artifact, data, metadata)
    _put(storage, layout.manifest_key(stem), manifest.encode(record), metadata)
    return HistoryBackup(started, kind, stem, artifact, layout.manifest_key(stem), len(data), record["sha256"])


def make_history(storage, prefix, job, stamps, kind="scheduled", workers=WORKERS):
    """Store one backup per stamp (see the module docstring); returns [HistoryBackup] in stamp order."""
    stamps = list(stamps)
    if isinstance(storage, dict):
        return _with_own_storages(storage, prefix, job, stamps, kind, workers)
    if storage.type not in THREAD_SAFE_TYPES or workers <= 1 or len(stamps) < 2:
        return [_store_one(storage, prefix, job, kind, started) for started in stamps]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda started: _store_one(storage, prefix, job, kind, started), stamps))


def _with_own_storages(params, prefix, job, stamps, kind, workers):
    local = threading.local()
    made = []
    lock = threading.Lock()

    def store(started):
        storage = getattr(local, "storage", None)
        if storage is None:
            storage = local.storage = make_storage(params)
            with lock:
                made.append(storage)
        return _store_one(storage, prefix, job, kind, started)

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(stamps)))) as pool:
            return list(pool.map(store, stamps))
    finally:
        for storage in made:
            storage.close()
