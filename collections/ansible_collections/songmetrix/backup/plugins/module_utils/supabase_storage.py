"""Supabase Storage objects, read through its S3-compatible endpoint, stored beside a backup.

Each object of the chosen buckets is streamed (never a full-size temporary file) into the job's
storage as ``<stem>.storage/<bucket>/<object key>``, and listed in the manifest's attachments
with its bucket, key, content type, size and SHA-256 (role ``storage-object``). Path parts that
could escape or confuse a folder tree ('', '.', '..', control characters, '%') are
percent-encoded, so every stored key stays inside the backup's own folder; the manifest keeps
the original key.
"""

from urllib.parse import urlsplit

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import CHUNK_SIZE, ThreadProducer, stream
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import make_storage

ROLE = "storage-object"
STORAGE_FOLDER = ".storage"


def encode_part(part):
    """One path part, safe as a file name and an S3 key part: '%', control characters and DEL as %XX
    (UTF-8), '.' and '..' as %2E, an empty part as %00 (an object key never holds NUL)."""
    if part == "":
        return "%00"
    if part in (".", ".."):
        return "%2E" * len(part)
    out = []
    for ch in part:
        if ch == "%" or ord(ch) < 32 or ch == "\x7f":
            out.append("".join("%%%02X" % byte for byte in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def stored_key(stem, bucket, key, suffix=""):
    """Where an object of ``bucket`` is kept in the backup's storage."""
    path = "/".join(encode_part(part) for part in key.split("/"))
    return "%s%s/%s/%s%s" % (stem, STORAGE_FOLDER, encode_part(bucket), path, suffix)


def folder_conflicts(keys):
    """Stored keys that are also the folder of another key: an S3 store holds both, a file system cannot."""
    keys = set(keys)
    clashes = []
    for key in keys:
        parts = key.split("/")
        for index in range(1, len(parts)):
            folder = "/".join(parts[:index])
            if folder in keys:
                clashes.append(folder)
    return sorted(set(clashes))


class SupabaseBuckets(object):
    """The Storage buckets one backup copies (``source.supabase.storage_buckets``)."""

    def __init__(self, opts):
        names = list(opts.get("storage_buckets") or [])
        self.all = names == ["all"]
        if "all" in names and not self.all:
            raise ValidationError("source.supabase.storage_buckets: 'all' cannot be combined with bucket names")
        for name in names:
            if not name or "/" in name or name in (".", "..") or any(ord(ch) < 32 for ch in name):
                raise ValidationError("source.supabase.storage_buckets: %r is not a bucket name" % (name,))
        self.names = [] if self.all else names
        endpoint = opts.get("storage_endpoint")
        if not endpoint:
            raise ValidationError("source.supabase.storage_buckets needs source.supabase.storage_endpoint (the "
                                  "project's S3 endpoint, https://<ref>.supabase.co/storage/v1/s3)")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError("source.supabase.storage_endpoint must be an http(s) URL, not %r" % endpoint)
        if parts.username or parts.password:
            raise ValidationError("source.supabase.storage_endpoint must not hold credentials: use "
                                  "storage_access_key and storage_secret_key")
        missing = [name for name in ("storage_access_key", "storage_secret_key", "storage_region")
                   if not opts.get(name)]
        if missing:
            raise ValidationError("source.supabase.storage_buckets needs %s (Supabase: Project Settings > "
                                  "Storage > S3 connection)" % ", ".join("source.supabase." + m for m in missing))
        self.params = dict(type="s3", endpoint_url=endpoint, region=opts["storage_region"],
                           access_key=opts["storage_access_key"], secret_key=opts["storage_secret_key"],
                           addressing_style="path", retries=3, timeout=60)
        self._readers = {}

    def endpoint(self):
        return self.params["endpoint_url"]

    def _reader(self, bucket):
        if bucket not in self._readers:
            self._readers[bucket] = make_storage(dict(self.params, bucket=bucket))
        return self._readers[bucket]

    def close(self):
        for reader in self._readers.values():
            reader.close()
        self._readers = {}

    def preflight(self):
        """Resolve 'all' and prove every bucket can be read (read only; nothing is written)."""
        if self.all:
            probe = self._reader("-")
            response = probe._call("listing the buckets of", None, "list_buckets")
            self.names = sorted(item["Name"] for item in response.get("Buckets", ()))
        for bucket in self.names:
            try:
                self._reader(bucket).preflight(create=False)
            except BackupError as exc:
                raise type(exc)("Supabase Storage bucket %s at %s: %s" % (bucket, self.endpoint(), exc))
        return list(self.names)

    def listing(self, stem, suffix):
        """[(bucket, object key, size, stored key)] of every object, sorted; reads listings only."""
        found = []
        for bucket in self.names:
            for info in self._reader(bucket).list_keys(""):
                found.append((bucket, info.key, info.size, stored_key(stem, bucket, info.key, suffix)))
        return found

    def copy_into(self, target, stem, metadata, transforms, suffix, written):
        """Copy every object into ``target``; returns the attachments. ``written`` collects stored keys (for
        removal when the backup fails)."""
        objects = self.listing(stem, suffix)
        if getattr(target, "type", None) in ("local", "sftp"):
            clashes = folder_conflicts(item[3] for item in objects)
            if clashes:
                raise BackupError("Supabase Storage holds objects that are also folders of other objects (%s): "
                                  "a %s storage cannot keep both; use an S3 storage for this backup"
                                  % (", ".join(clashes[:5]), target.type))
        attachments = []
        for bucket, key, _size, target_key in objects:
            attachments.append(self._copy_one(target, bucket, key, target_key, metadata, transforms, written))
        return attachments

    def _copy_one(self, target, bucket, key, target_key, metadata, transforms, written):
        reader = self._reader(bucket)
        response = reader._call("reading", key, "get_object", Bucket=bucket, Key=key)
        body = response["Body"]
        content_type = response.get("ContentType")

        def produce(out):
            try:
                while True:
                    try:
                        chunk = body.read(CHUNK_SIZE)
                    except Exception as exc:  # botocore and urllib3 errors alike: the read failed
                        raise reader.explain(exc, "reading", key)
                    if not chunk:
                        break
                    out.write(chunk)
            finally:
                body.close()

        writer = target.open_writer(target_key, metadata, response.get("ContentLength"))
        try:
            outcome = stream(ThreadProducer("read %s/%s" % (bucket, key), produce), transforms, writer, [])
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        written.append(target_key)
        return {"key": target_key, "size": outcome.stored_size, "sha256": outcome.sha256, "role": ROLE,
                "bucket": bucket, "object_key": key, "raw_size": outcome.raw_size, "content_type": content_type}
