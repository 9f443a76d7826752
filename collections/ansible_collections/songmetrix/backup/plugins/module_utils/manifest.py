"""The manifest: the JSON record that makes stored bytes a backup. Written last, never holds secrets."""

import json
import socket

from ansible_collections.songmetrix.backup.plugins.module_utils.encryption import manifest_info
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.layout import iso_utc
from ansible_collections.songmetrix.backup.plugins.module_utils.signing import Keyring

FORMAT_VERSION = 1


def build_manifest(job, kind, timezone, source, artifact, started, finished, compression, stream=None, extra=None,
                   table_counts=None, encryption=None):
    """The manifest dict; ``stream`` (a StreamResult) is None for a check-mode preview.

    ``table_counts``: exact rows per dumped table at dump time ({"schema.table": n} for PostgreSQL,
    {"table": n} for MySQL/MariaDB and SQLite), None when not counted (files, row_counts off).
    ``encryption``: method and recipients' fingerprints (encryption.py), never a key or passphrase.
    """
    manifest = {
        "format_version": FORMAT_VERSION,
        "job": job,
        "engine": source.engine,
        "database": source.database,
        "format": getattr(source, "format", None) or source.extension,
        "host": socket.gethostname(),
        "kind": kind,
        "timezone": timezone,
        "started": iso_utc(started),
        "finished": iso_utc(finished) if finished else None,
        "duration_seconds": round((finished - started).total_seconds(), 3) if finished else None,
        "artifact": artifact,
        "raw_size": stream.raw_size if stream else None,
        "stored_size": stream.stored_size if stream else None,
        "compression": compression,
        "encryption": manifest_info(encryption, stream),
        "sha256": stream.sha256 if stream else None,
        "chunks": [],
        "tool_version": source.tool_version,
        "server_version": source.server_version,
        "table_counts": table_counts,
    }
    if extra:
        manifest.update(extra)
    return manifest


def encode(manifest):
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")


def decode(data):
    return json.loads(data.decode("utf-8"))


SIGNED_KIND = "manifest"  # what the signature says this record is (signing.py)


def signed_bytes(keyring, record):
    """The bytes to store for a manifest: encode(record), signed when the job has a key."""
    return keyring.encode(SIGNED_KIND, record, encode)


def read(storage, key, keyring=None):
    """(record, signing.Verdict) of the manifest stored at ``key`` (see check)."""
    return check(storage.get_small(key), key, keyring)


def check(data, key, keyring=None):
    """(record, signing.Verdict) of a manifest's stored bytes.

    BackupError when they are not one JSON object (duplicate keys included): the caller decides
    whether an unauthenticated or invalid manifest is acceptable.
    """
    try:
        return (keyring or Keyring(None)).check(SIGNED_KIND, data, encode, "manifest %s" % key)
    except ValueError as exc:
        raise BackupError("manifest %s is not valid JSON: %s" % (key, exc))


METADATA_FIELDS = ("job", "engine", "database", "kind", "started", "timezone")


def object_metadata(record):
    """The manifest fields every stored object carries as metadata (S3 user metadata)."""
    return {name: str(record.get(name) or "") for name in METADATA_FIELDS}


def attachments(record):
    """The objects stored beside the artifact that are not part of its stream (stripes of a SQL Server
    backup to URL, the extra artifacts of a Supabase backup): [{key, size, sha256, role}]."""
    return [item for item in record.get("attachments") or [] if isinstance(item, dict)]


def stored_objects(record):
    """[(key, size)] of the objects a manifest names: its chunks (or else its one artifact), and its attachments."""
    chunks = record.get("chunks") or []
    if chunks:
        objects = [(chunk.get("key"), chunk.get("size")) for chunk in chunks if isinstance(chunk, dict)]
    else:
        objects = [(record.get("artifact"), record.get("stored_size"))]
    return objects + [(item.get("key"), item.get("size")) for item in attachments(record)]


def object_keys(record):
    """Every key a manifest names: its artifact, its chunks and its attachments."""
    chunks = record.get("chunks") or []
    return ([record.get("artifact")] + [chunk.get("key") if isinstance(chunk, dict) else None for chunk in chunks]
            + [item.get("key") for item in attachments(record)])
