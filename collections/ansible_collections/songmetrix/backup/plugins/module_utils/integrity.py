"""Re-reading stored artifacts: size and SHA-256 against what the manifest recorded."""

import hashlib

CHUNK_SIZE = 1024 * 1024


def read_digest(storage, key, sink=None):
    """(size, sha256 hex) of a stored object, read as a stream; ``sink(chunk)`` sees every chunk."""
    reader = storage.open_reader(key)
    digest = hashlib.sha256()
    size = 0
    try:
        while True:
            chunk = reader.read(CHUNK_SIZE)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            if sink is not None:
                sink(chunk)
    finally:
        reader.close()
    return size, digest.hexdigest()


def artifact_problem(storage, record, read=read_digest):
    """(what is wrong with the stored artifact or None, bytes read); ``read(storage, key)`` -> (size, sha256)."""
    key = record.get("artifact")
    if not key:
        return "the manifest names no artifact", 0
    if not storage.exists(key):
        return "artifact %s is missing" % key, 0
    size, sha256 = read(storage, key)
    return mismatch("artifact " + key, size, sha256, record.get("stored_size"), record.get("sha256")), size


def mismatch(key, size, sha256, expected_size, expected_sha256):
    """What differs between what was read and what the manifest recorded (None when nothing)."""
    if expected_size is not None and size != expected_size:
        return "%s has %d bytes, the manifest says %d" % (key, size, expected_size)
    if sha256 != expected_sha256:
        return "%s has SHA-256 %s, the manifest says %s" % (key, sha256, expected_sha256)
    return None


def copy_object(source, target, key, metadata=None):
    """Copy one object between storages as a stream; nothing is visible in ``target`` unless complete."""
    reader = source.open_reader(key)
    try:
        writer = target.open_writer(key, metadata, getattr(reader, "size", None))
        try:
            while True:
                chunk = reader.read(CHUNK_SIZE)
                if not chunk:
                    break
                writer.write(chunk)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    finally:
        reader.close()
