"""Plant a backup in a local storage the way an attacker with write access to the storage would.

    from tests.security.planting import plant_backup
    planted = plant_backup(storage_dir, "orders", payload=b"\\! id\\n", engine="postgresql", fmt="plain")

The artifact holds ``payload`` compressed with zstd (or stored as is with compression "none"), and the
manifest is a well-formed manifest of this collection's layout whose sizes and SHA-256 match the
artifact, so every check that only compares a manifest with its artifact passes. ``fields`` overrides
or adds manifest fields (``encryption: None``, a ``format`` the job never used, a ``signature``).
Returns the manifest key, the record and the paths.
"""

from __future__ import annotations

import datetime
import hashlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from ansible_collections.songmetrix.backup.plugins.module_utils import layout, manifest

EXTENSIONS = {
    ("postgresql", "plain"): "sql",
    ("postgresql", "custom"): "dump",
    ("postgresql", "directory"): "tar",
    ("mysql", "sql"): "sql",
    ("mariadb", "sql"): "sql",
    ("sqlite", "sqlite3"): "sqlite3",
    ("files", "tar"): "tar",
}
SUFFIXES = {"zstd": ".zst", "gzip": ".gz", "none": ""}


@dataclass
class Planted:
    manifest_key: str
    record: dict
    artifact_path: Path
    manifest_path: Path


def _compress(payload: bytes, compression: str) -> bytes:
    if compression == "none":
        return payload
    tool = {"zstd": ["zstd", "-q", "-c"], "gzip": ["gzip", "-c", "-n"]}[compression]
    return subprocess.run(tool, input=payload, stdout=subprocess.PIPE, check=True).stdout


def plant_backup(storage_root, job, payload: bytes, engine="postgresql", fmt="plain", started=None,
                 compression="zstd", prefix="", kind="scheduled", fields=None, encode=manifest.encode) -> Planted:
    """Write ``<stem>.<ext>`` and its manifest under ``storage_root`` (a local storage's path)."""
    started = (started or datetime.datetime.now(datetime.timezone.utc)).replace(microsecond=0)
    extension = EXTENSIONS[(engine, fmt)] + SUFFIXES[compression]
    stem = layout.backup_stem(prefix, job, kind, started)
    artifact_key = layout.artifact_key(stem, extension)
    data = _compress(payload, compression)
    source = SimpleNamespace(engine=engine, database=job, format=fmt, extension=EXTENSIONS[(engine, fmt)],
                             tool_version="planted", server_version="planted")
    stream = SimpleNamespace(raw_size=len(payload), stored_size=len(data), sha256=hashlib.sha256(data).hexdigest())
    record = manifest.build_manifest(job, kind, "UTC", source, artifact_key, started, started,
                                     {"algorithm": compression}, stream)
    record.update(fields or {})
    root = Path(storage_root)
    artifact_path = root / artifact_key
    artifact_path.parent.mkdir(parents=True, exist_ok=True)
    artifact_path.write_bytes(data)
    key = layout.manifest_key(stem)
    manifest_path = root / key
    manifest_path.write_bytes(encode(record))
    return Planted(key, record, artifact_path, manifest_path)


def next_second():
    """Backups of a job are named by the second they start: the next run of the job starts in a new one."""
    time.sleep(1.01 - time.time() % 1)
