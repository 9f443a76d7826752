"""Storage health: write, read back and delete a probe object; free space; S3 versioning and Object Lock.

The probe is ``<prefix>/.healthcheck/<host>-<random>``: a name no backup can have (backups live
under ``<prefix>/<job>/`` and a job name cannot start with '.'), written the way the storage writes
manifests (never replacing an object), read back and compared, then deleted. Once its write was
attempted, the delete is attempted too, whatever failed in between; on S3 the exact version
written is deleted, so a versioned bucket keeps no old version or delete marker of it.

Nothing else is written, and nothing but the probe is ever deleted. Check mode reads only:
connect, free space, bucket settings; no probe.
"""

import errno
import os
import posixpath
import re
import secrets
import socket
import struct

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.health_source import (
    CRITICAL,
    HEALTHY,
    WARNING,
    worst,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import make_storage
from ansible_collections.songmetrix.backup.plugins.module_utils.validation import storage_prefix

PROBE_FOLDER = ".healthcheck"
CMD_EXTENDED = 200
CMD_EXTENDED_REPLY = 201


def probe_key(prefix):
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname() or "host")[:60] or "host"
    name = "%s-%s" % (host, secrets.token_hex(6))
    return "/".join([part for part in (prefix, PROBE_FOLDER, name) if part])


def probe_body(key):
    return ("songmetrix.backup healthcheck probe %s %s\n" % (key, secrets.token_hex(16))).encode("ascii")


def _text(exc):
    if isinstance(exc, BackupError):
        return str(exc)
    if isinstance(exc, OSError):
        where = " %s" % exc.filename if getattr(exc, "filename", None) else ""
        return "%s%s: %s" % (type(exc).__name__, where, exc.strerror or exc)
    return "%s: %s" % (type(exc).__name__, exc)


# -- free space ----------------------------------------------------------------------------------

def _local_free(storage, notes):
    path = storage.root
    while not os.path.exists(path):
        path = os.path.dirname(path)
    info = os.statvfs(path)
    total = info.f_blocks * info.f_frsize
    return info.f_bavail * info.f_frsize, total


def _sftp_free(storage, notes):
    """statvfs@openssh.com through paramiko's request channel; (None, None) when the server lacks it."""
    import paramiko  # present: SftpStorage refused to start without it

    path = storage.root or "."

    def ask(sftp):
        kind, msg = sftp._request(CMD_EXTENDED, "statvfs@openssh.com", path)  # pylint: disable=protected-access
        if kind != CMD_EXTENDED_REPLY:
            raise IOError("unexpected answer %s" % kind)
        fields = [msg.get_int64() for _field in range(11)]
        return fields

    try:
        sftp = storage._session()  # pylint: disable=protected-access
        while True:
            try:
                fields = ask(sftp)
                break
            except IOError as exc:
                # the base folder may not exist yet: ask for its nearest existing parent
                parent = posixpath.dirname(path.rstrip("/"))
                if exc.errno != errno.ENOENT or parent in ("", path):
                    raise
                path = parent
    except (IOError, EOFError, paramiko.SSHException, struct.error) as exc:
        notes.append("free space unknown: the SFTP server does not answer statvfs@openssh.com (%s)" % exc)
        return None, None
    bsize, frsize, blocks, _bfree, bavail = fields[:5]
    frsize = frsize or bsize
    return bavail * frsize, blocks * frsize


# -- S3 bucket settings ---------------------------------------------------------------------------

def _s3_settings(storage, result, notes):
    """versioning, object_lock (+ object_lock_default); 'unknown' where access is denied."""
    from ansible_collections.songmetrix.backup.plugins.module_utils.storage_s3 import (
        BotoCoreError,
        ClientError,
        error_code,
    )

    client = storage.client()
    try:
        status = client.get_bucket_versioning(Bucket=storage.bucket).get("Status")
        result["versioning"] = {"Enabled": "enabled", "Suspended": "suspended"}.get(status, "disabled")
    except ClientError as exc:
        status, code = error_code(exc)
        if status != 403 and code not in ("AccessDenied", "Forbidden"):
            raise storage.explain(exc, "reading the versioning state of")
        result["versioning"] = "unknown"
        notes.append("versioning unknown: access denied to GetBucketVersioning (%s)" % code)
    except BotoCoreError as exc:
        raise storage.explain(exc, "reading the versioning state of")
    try:
        config = client.get_object_lock_configuration(Bucket=storage.bucket).get("ObjectLockConfiguration") or {}
        result["object_lock"] = "enabled" if config.get("ObjectLockEnabled") == "Enabled" else "disabled"
        retention = (config.get("Rule") or {}).get("DefaultRetention")
        if retention:
            result["object_lock_default"] = dict(
                (k.lower(), v) for k, v in retention.items() if k in ("Mode", "Days", "Years") and v)
    except ClientError as exc:
        status, code = error_code(exc)
        if code == "ObjectLockConfigurationNotFoundError":
            result["object_lock"] = "disabled"
        elif status == 403 or code in ("AccessDenied", "Forbidden"):
            result["object_lock"] = "unknown"
            notes.append("object_lock unknown: access denied to GetObjectLockConfiguration (%s)" % code)
        else:
            raise storage.explain(exc, "reading the Object Lock configuration of")
    except BotoCoreError as exc:
        raise storage.explain(exc, "reading the Object Lock configuration of")


# -- the probe ------------------------------------------------------------------------------------

class _Probe(object):
    """write / read / delete of one probe object; per storage type where the generic contract is not enough."""

    def __init__(self, storage, key, notes):
        self.storage = storage
        self.key = key
        self.notes = notes
        self.version_id = None

    def write(self, body):
        self.storage.put_small(self.key, body, {"purpose": "healthcheck"})

    def read(self):
        return self.storage.get_small(self.key)

    def delete(self):
        self.storage.delete(self.key)
        if self.storage.exists(self.key):
            raise BackupError("%s is still there after the delete" % self.storage.location(self.key))
        self._remove_folder()

    def _remove_folder(self):
        pass


class _LocalProbe(_Probe):
    def _remove_folder(self):
        try:
            os.rmdir(os.path.dirname(self.storage.location(self.key)))
        except OSError:
            pass  # not empty (another host's probe) or gone: fine


class _SftpProbe(_Probe):
    def _remove_folder(self):
        folder = posixpath.dirname(self.storage._remote_path(self.key))  # pylint: disable=protected-access
        try:
            self.storage._session().rmdir(folder)  # pylint: disable=protected-access
        except Exception:  # not empty, gone, or the connection: the probe itself is gone already
            pass


class _S3Probe(_Probe):
    """PutObject without Object Lock arguments (the probe must be deletable), If-None-Match when the
    service supports it; the delete names the version written."""

    def write(self, body):
        storage = self.storage
        args = storage.object_args({"purpose": "healthcheck"})
        args.pop("ObjectLockMode", None)
        args.pop("ObjectLockRetainUntilDate", None)
        args.pop("Tagging", None)
        args.update(storage.checksum_args(body))
        args.update(Bucket=storage.bucket, Key=self.key, Body=bytes(body))
        response = storage._conditional_call(  # pylint: disable=protected-access
            "writing the probe", self.key, "put_object", args)
        self.version_id = (response or {}).get("VersionId")

    def delete(self):
        storage = self.storage
        args = dict(Bucket=storage.bucket, Key=self.key)
        if self.version_id:
            args["VersionId"] = self.version_id
        storage._call("deleting", self.key, "delete_object", **args)  # pylint: disable=protected-access
        if self.version_id:
            self._remove_versions()
        elif storage.exists(self.key):
            raise BackupError("%s is still there after the delete" % storage.location(self.key))

    def _remove_versions(self):
        """Versions and delete markers left of exactly this key (a suspended bucket's null version)."""
        storage = self.storage
        try:
            listing = storage._call("listing the versions of", self.key,  # pylint: disable=protected-access
                                    "list_object_versions", Bucket=storage.bucket, Prefix=self.key)
        except BackupError as exc:
            self.notes.append("could not list the probe's versions to make sure none is left: %s" % exc)
            return
        left = [item for kind in ("Versions", "DeleteMarkers") for item in listing.get(kind) or []
                if item.get("Key") == self.key]
        for item in left:
            storage._call("deleting", self.key, "delete_object",  # pylint: disable=protected-access
                          Bucket=storage.bucket, Key=self.key, VersionId=item["VersionId"])
        if left and storage.exists(self.key):
            raise BackupError("%s is still there after the delete" % storage.location(self.key))


PROBES = {"local": _LocalProbe, "sftp": _SftpProbe, "s3": _S3Probe}


def _free_level(free, thresholds):
    warn, crit = thresholds.get("free_warning"), thresholds.get("free_critical")
    if free is None:
        return HEALTHY, None
    if crit is not None and free <= crit:
        return CRITICAL, crit
    if warn is not None and free <= warn:
        return WARNING, warn
    return HEALTHY, None


def _connect(storage):
    """Reach the storage, reading only (no probe of the storage's own preflight is written)."""
    if storage.type == "local":
        path = storage.root
        while not os.path.exists(path):
            path = os.path.dirname(path)
        if not os.path.isdir(path):
            raise BackupError("storage.path %s: %s is not a directory" % (storage.root, path))
        return
    storage.preflight(False)


def check_storage(params, thresholds, check_mode, scrub=None):
    """{status, type, location, write_ok, read_ok, delete_ok, failed_step, probe_key, free_bytes,
    total_bytes, versioning, object_lock, msg, notes}."""
    scrub = scrub or (lambda text: text)
    result = dict(status=CRITICAL, type=params.get("type") or "local", location=None, reachable=False,
                  write_ok=None, read_ok=None, delete_ok=None, failed_step=None, probe_key=None,
                  free_bytes=None, total_bytes=None, versioning=None, object_lock=None, msg=None, notes=[])
    notes = result["notes"]
    storage = None
    step = "connect"
    try:
        prefix = storage_prefix(params.get("prefix"))
        storage = make_storage(params)
        result["location"] = storage.location(prefix + "/" if prefix else "")
        s3_scrub = getattr(storage, "scrub", None)
        if s3_scrub is not None:
            inner = scrub

            def scrub(text):
                return inner(s3_scrub(text))
        _connect(storage)
        result["reachable"] = True
        step = "free space"
        if storage.type == "local":
            result["free_bytes"], result["total_bytes"] = _local_free(storage, notes)
        elif storage.type == "sftp":
            result["free_bytes"], result["total_bytes"] = _sftp_free(storage, notes)
        else:
            step = "bucket settings"
            _s3_settings(storage, result, notes)
            notes.append("free space does not apply to S3")
        skip = None
        if check_mode:
            skip = "check mode: no probe object written"
        elif storage.type == "s3" and (params.get("object_lock") or result.get("object_lock_default")):
            skip = ("probe skipped: the bucket's default Object Lock retention (or storage.object_lock) "
                    "would keep a probe object that could not be deleted")
        if skip:
            notes.append(skip)
        else:
            _run_probe(storage, prefix, result)
    except Exception as exc:  # every problem is a result; the probe's own cleanup ran in _run_probe
        result["failed_step"] = result["failed_step"] or step
        result["msg"] = scrub("%s failed: %s" % (result["failed_step"], _text(exc)))
        result["notes"] = [scrub(note) for note in notes]
        return result
    finally:
        if storage is not None:
            storage.close()
    level, limit = _free_level(result["free_bytes"], thresholds)
    result["status"] = worst(HEALTHY, level)
    if level != HEALTHY:
        result["msg"] = "free space %s bytes is at or below the %s threshold %s" % (result["free_bytes"], level, limit)
    else:
        done = [name for name in ("write", "read", "delete") if result["%s_ok" % name]]
        result["msg"] = "reachable; probe %s" % ("/".join(done) + " ok" if done else "not written")
    result["notes"] = [scrub(note) for note in notes]
    return result


def _run_probe(storage, prefix, result):
    key = probe_key(prefix)
    result["probe_key"] = key
    body = probe_body(key)
    probe = PROBES[storage.type](storage, key, result["notes"])
    problem = None
    try:
        try:
            probe.write(body)
            result["write_ok"] = True
        except Exception:
            result["write_ok"] = False
            result["failed_step"] = "write"
            raise
        try:
            back = probe.read()
        except Exception:
            result["read_ok"] = False
            result["failed_step"] = "read"
            raise
        result["read_ok"] = back == body
        if not result["read_ok"]:
            result["failed_step"] = "read"
            problem = BackupError("the probe read back from %s differs from what was written (%d bytes, not %d)"
                                  % (storage.location(key), len(back), len(body)))
    finally:
        _cleanup(storage, probe, key, result)
        if result["delete_ok"] is False and result["failed_step"] is None:
            result["failed_step"] = "delete"
            problem = BackupError("cannot delete the probe %s: %s" % (storage.location(key), result.pop("_why")))
    if problem is not None:
        raise problem


def _cleanup(storage, probe, key, result):
    """Delete the probe, whatever happened before. A failed write usually stored nothing: then
    nothing is deleted (on a versioned S3 bucket a blind delete would leave a delete marker)."""
    if result["write_ok"] is False:
        try:
            if not storage.exists(key):
                return
        except Exception:  # cannot tell: try the delete
            pass
    try:
        probe.delete()
        result["delete_ok"] = True
    except Exception as exc:
        result["delete_ok"] = False
        if result["failed_step"] is None:
            result["_why"] = _text(exc)
        else:
            result["notes"].append("the probe %s could not be deleted either: %s" % (storage.location(key), _text(exc)))
