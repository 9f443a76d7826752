"""Pick the storage implementation for ``storage.type`` and check its options.

Every storage (storage_local, storage_s3, storage_sftp) offers the same methods, keyed by
'/'-separated keys relative to the storage root (see layout.py):

  type                          "local", "s3" or "sftp"
  describe()                    identity without secrets, e.g. {"type": "s3", "bucket": ..., "endpoint_url": ...}
  location(key)                 where a key lives, for people: a path, s3://bucket/key, sftp://user@host:port/path
  preflight(create)             prove the storage is reachable and (create=True) writable; create=False
                                (check mode) only reads. Raises ValidationError/BackupError.
  exists(key)                   bool
  open_writer(key, metadata, size_hint)
                                a writer: write(bytes) any number of times, then commit() (the object
                                appears complete, never overwriting one) or abort() (nothing stays
                                behind; never raises). metadata is {str: str} (job, engine, ...).
  put_small(key, data, metadata)    write a small object (a manifest) the same way, in one call
  open_reader(key)              a reader: read(n) -> bytes (b"" at the end), close(); .size is known
  get_small(key)                the bytes of a small object
  list_keys(prefix)             every object under a key prefix, recursively: ObjectInfo(key, size, modified)
  create_small(key, data)       write a small status object (a lock) that must not exist yet: raises BackupError
                                when the key exists (local link(), S3 If-None-Match: * and never object-locked,
                                SFTP plain rename); like put_small without metadata
  replace_small(key, data)      write a small status object (never a backup), REPLACING an existing one,
                                atomically for readers: local temp file + fsync + os.replace; S3 a plain
                                PutObject (no If-None-Match, not locked); SFTP temp file +
                                posix-rename@openssh.com, or remove + rename where the server refuses it
  delete(key)                   remove one object; a missing one is not an error
  delete_many(keys)             remove many objects, in list order as far as the storage allows; returns
                                [(key, message)] for the keys that could NOT be deleted ([] = all gone); a
                                missing key is not an error. S3: DeleteObjects with at most 1000 keys
                                per request, one request after another; a request that fails (after retries)
                                raises StorageError naming the bucket and how many keys were deleted before.
                                SFTP: pipelined removes; a lost connection raises StorageError.
  delete_requests               int, starts at 0: requests delete_many made (S3: DeleteObjects calls;
                                local and SFTP: removes)
  S3 only (callers use getattr; a local or SFTP remove is final):
  delete_markers                [keys]: keys delete_many did not remove but only hid behind a delete marker
                                (a versioned bucket, every Object Lock bucket: the data stays as a noncurrent
                                version); S3 answers DeleteObjects per key, so this is what happened
  versioning()                  the bucket's versioning: "enabled", "suspended", "disabled" or "unknown"
  close()                       release connections

Errors name the location and the cause and never contain a secret.
"""

import contextlib
import json
from collections import namedtuple

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

# modified: seconds since the epoch (float), or None where the storage cannot tell.
ObjectInfo = namedtuple("ObjectInfo", ["key", "size", "modified"])

COMMON_OPTIONS = ("type", "path", "prefix", "retries", "timeout")
TYPE_OPTIONS = {
    "local": (),
    "s3": (
        "bucket", "region", "endpoint_url", "addressing_style", "access_key", "secret_key",
        "session_token", "profile", "storage_class", "sse", "kms_key_id", "object_lock", "tags",
        "validate_certs", "ca_bundle", "part_size", "max_concurrency", "checksum",
        "request_checksum_calculation",
    ),
    "sftp": (
        "host", "port", "user", "password", "private_key", "private_key_passphrase", "known_hosts",
        "host_key", "host_key_checking",
    ),
}


def check_options(params):
    """Refuse options that belong to another storage type: a typo must not be silently ignored."""
    kind = params.get("type") or "local"
    if kind not in TYPE_OPTIONS:
        raise ValidationError("storage.type must be one of %s, not %r" % (", ".join(sorted(TYPE_OPTIONS)), kind))
    allowed = set(COMMON_OPTIONS) | set(TYPE_OPTIONS[kind])
    stray = sorted(name for name, value in params.items() if value is not None and name not in allowed)
    if stray:
        raise ValidationError(
            "storage option(s) %s do not apply to storage.type %s" % (", ".join(stray), kind)
        )
    if params.get("retries") is not None and not 0 <= params["retries"] <= 20:
        raise ValidationError("storage.retries must be between 0 and 20, not %s" % params["retries"])
    if params.get("timeout") is not None and not 1 <= params["timeout"] <= 3600:
        raise ValidationError("storage.timeout must be between 1 and 3600 seconds, not %s" % params["timeout"])
    return kind


def make_storage(params):
    """The storage object for a validated ``storage`` dict."""
    kind = check_options(params)
    if kind == "local":
        from ansible_collections.songmetrix.backup.plugins.module_utils.storage_local import LocalStorage

        return LocalStorage(params.get("path"))
    if kind == "s3":
        from ansible_collections.songmetrix.backup.plugins.module_utils.storage_s3 import S3Storage

        return S3Storage(params)
    from ansible_collections.songmetrix.backup.plugins.module_utils.storage_sftp import SftpStorage

    return SftpStorage(params)


def identity(storage):
    """The storage's identity without secrets (type, bucket or host, path), as one string."""
    return json.dumps(storage.describe(), sort_keys=True)


def remove_emptied_folders(keys, rmdir):
    """After deleting ``keys``: ``rmdir(folder)`` each folder they were in, deepest first, and its
    parents up to (never) the root, stopping at the first refusal (OSError: not empty, or gone).
    For storages with real folders (local, SFTP), so pruned date folders do not pile up."""
    folders = {key.rpartition("/")[0] for key in keys}
    for folder in sorted(folders, key=lambda f: f.count("/"), reverse=True):
        while folder:
            try:
                rmdir(folder)
            except OSError:
                break
            folder = folder.rpartition("/")[0]


def read_whole(reader):
    """All bytes of an opened reader (a manifest, a probe), then close it: get_small() of every storage."""
    try:
        parts = []
        while True:
            data = reader.read(1 << 20)
            if not data:
                return b"".join(parts)
            parts.append(data)
    finally:
        reader.close()


@contextlib.contextmanager
def opened_storage(params):
    """make_storage() for the length of a with-block; connections are closed after it."""
    storage = make_storage(params)
    try:
        yield storage
    finally:
        storage.close()
