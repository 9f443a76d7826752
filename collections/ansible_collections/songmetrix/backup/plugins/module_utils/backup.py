"""One backup, end to end: validate everything, stream the source to storage, write the manifest last.

The dump module backs up a source (a database, a directory); the upload module an existing file.
Both build a plan (validation only, nothing runs) and hand it to run_backup().
"""

import datetime
import os
import tempfile

from ansible_collections.songmetrix.backup.plugins.module_utils import layout, manifest, validation
from ansible_collections.songmetrix.backup.plugins.module_utils.attempts import AttemptLog
from ansible_collections.songmetrix.backup.plugins.module_utils.chunks import ChunkedWriter, parse_size
from ansible_collections.songmetrix.backup.plugins.module_utils.compression import (
    build_compressor,
    compressed_extension,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.encryption import build_encryptor, encryption_stages
from ansible_collections.songmetrix.backup.plugins.module_utils.encryption import extension as encryption_extension
from ansible_collections.songmetrix.backup.plugins.module_utils.job_lock import JobLocks, LockHeld, LockSettings
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import (
    BackupError,
    StorageError,
    ValidationError,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import stream
from ansible_collections.songmetrix.backup.plugins.module_utils.redact import secret_values
from ansible_collections.songmetrix.backup.plugins.module_utils.signing import Keyring
from ansible_collections.songmetrix.backup.plugins.module_utils.source_localfile import LocalFileSource
from ansible_collections.songmetrix.backup.plugins.module_utils.sources import make_source
from ansible_collections.songmetrix.backup.plugins.module_utils.spool import Spool
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import make_storage


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def spool_directory(path):
    path = path or tempfile.gettempdir()
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise ValidationError("spool_dir %s is not a writable directory" % path)
    return path


class BackupPlan(object):
    """Everything one backup needs, validated; building it runs nothing and writes nothing."""

    def __init__(self, params, source_factory):
        self.job = validation.job_name(params["job"])
        self.secrets = secret_values(params)
        self.kind = params.get("kind") or "scheduled"
        self.timezone = validation.timezone_name(params.get("timezone") or "UTC")
        storage_params = params["storage"]
        self.prefix = validation.storage_prefix(storage_params.get("prefix"))
        self.compressor = build_compressor(
            params.get("compression") or "zstd", params.get("compression_level"), params.get("compression_threads")
        )
        self.lock_settings = LockSettings(params.get("lock"))
        self.keyring = Keyring(params.get("signing"))
        self.compression = (
            {"algorithm": "none", "level": None} if self.compressor is None else
            {"algorithm": self.compressor.info["algorithm"], "level": self.compressor.info["level"]}
        )
        self.max_chunk_size = parse_size(params.get("max_chunk_size"))
        self.spool_dir = spool_directory(params.get("spool_dir"))
        self.source = source_factory(self.spool_dir)
        if getattr(self.source, "stores_itself", False):
            # The source writes its objects into the storage itself (SQL Server BACKUP TO URL): no transforms.
            if params.get("encryption") or self.max_chunk_size:
                raise ValidationError("encryption and max_chunk_size cannot apply to a backup the server writes "
                                      "into the storage itself (source.mssql.mode url); use mode native")
            self.compressor = None
            self.compression = {"algorithm": "none", "level": None}
        self.storage = make_storage(storage_params)
        # Only an explicitly given spool_dir keeps failed uploads: the system temp dir is no place for them.
        self.spool = Spool(self.spool_dir, self.storage, self.keyring) if params.get("spool_dir") else None
        # Last: a gpg encryptor holds a temporary home directory that close() removes.
        self.encryptor = build_encryptor(params.get("encryption"))
        self.encryption = self.encryptor.info if self.encryptor else None

    def transforms(self):
        return [self.compressor] + encryption_stages(self.encryptor)

    def close(self):
        self.storage.close()
        if self.encryptor is not None:
            self.encryptor.close()

    def extension(self):
        ext = self.source.extension
        if self.compressor is not None:
            ext += "." + compressed_extension(self.compression["algorithm"])
        if self.encryption:
            ext += "." + encryption_extension(self.encryption)
        return ext

    def keys(self, started):
        stem = layout.backup_stem(self.prefix, self.job, self.kind, started)
        return layout.artifact_key(stem, self.extension()), layout.manifest_key(stem)

    def metadata(self, started):
        """Object metadata (S3 user metadata): enough to tell what an object is without its manifest."""
        return manifest.object_metadata(dict(
            job=self.job, engine=self.source.engine, database=self.source.database, kind=self.kind,
            started=layout.iso_utc(started), timezone=self.timezone,
        ))


def dump_plan(params):
    def source_factory(spool_dir):
        source = make_source(params["source"], spool_dir)
        if hasattr(source, "row_counts"):
            source.row_counts = params.get("row_counts", True) is not False
        if hasattr(source, "storage_params"):
            source.storage_params = params["storage"]
        return source

    return BackupPlan(params, source_factory)


def upload_plan(params):
    return BackupPlan(
        params, lambda spool_dir: LocalFileSource(params["src"], params.get("engine"), params.get("database"))
    )


class _StorageWriter(object):
    """Marks failures of the storage writer as StorageError, so the caller can tell them from source failures."""

    def __init__(self, writer):
        self._writer = writer

    @property
    def chunks(self):
        """What a ChunkedWriter stored: [{key, size, sha256}]."""
        return list(getattr(self._writer, "chunks", None) or [])

    def write(self, data):
        try:
            self._writer.write(data)
        except StorageError:
            raise
        except BackupError as exc:
            raise StorageError(str(exc), **exc.details)

    def commit(self):
        _as_storage_error(self._writer.commit)

    def abort(self):
        """Abort; returns what could not be cleaned up (an upload ID a dead endpoint kept), for the error."""
        self._writer.abort()
        return list(getattr(self._writer, "warnings", None) or [])


def _as_storage_error(call, *args):
    try:
        return call(*args)
    except StorageError:
        raise
    except BackupError as exc:
        if isinstance(exc, ValidationError):
            raise
        raise StorageError(str(exc), **exc.details)


def store_backup(plan, storage, started):
    """Stream the source into ``storage``, then write the manifest; returns (manifest dict, manifest key).

    A source with ``after_store(stored)`` hears how it went, after the manifest is stored or the
    backup failed (SQL Server: remove the .bak it wrote).
    """
    after_store = getattr(plan.source, "after_store", None)
    stored = False
    try:
        result = _store_backup(plan, storage, started)
        stored = True
        return result
    finally:
        if after_store is not None:
            after_store(stored)


def _store_backup(plan, storage, started):
    artifact_key, manifest_key = plan.keys(started)
    for key in (artifact_key, manifest_key):
        if _as_storage_error(storage.exists, key):
            raise BackupError("a backup named %s already exists; wait a second and run again" % key)
    metadata = plan.metadata(started)
    if getattr(plan.source, "stores_itself", False):
        outcome, extra = plan.source.store_into(storage, artifact_key, metadata)
        return _store_manifest(plan, storage, started, artifact_key, manifest_key, metadata, outcome, None, extra)
    size_hint = plan.source.size_estimate() if hasattr(plan.source, "size_estimate") else None
    if plan.max_chunk_size:
        writer = _StorageWriter(ChunkedWriter(storage, artifact_key, metadata, plan.max_chunk_size))
    else:
        writer = _StorageWriter(_as_storage_error(storage.open_writer, artifact_key, metadata, size_hint))
    try:
        outcome = stream(plan.source.open(), plan.transforms(), writer, plan.source.stream_checks())
        # Extra artifacts of the same backup (Supabase: roles, managed schemas, Storage objects), stored
        # while the source still holds its snapshot; listed in the manifest's attachments. A source that
        # stores any also has after_store(), which removes them when the backup fails.
        attachments = (plan.source.store_attachments(plan, storage, manifest_key[: -len(layout.MANIFEST_SUFFIX)],
                                                     metadata)
                       if hasattr(plan.source, "store_attachments") else None)
        # Rows per table, counted at dump time (in the dump's own snapshot for PostgreSQL); a
        # failed count fails the backup before its artifact becomes visible.
        table_counts = plan.source.table_counts() if hasattr(plan.source, "table_counts") else None
        writer.commit()
    except BackupError as exc:
        leftovers = writer.abort()
        if not leftovers:
            raise
        raise type(exc)("%s (cleaning up: %s)" % (exc, "; ".join(leftovers)), **exc.details)
    except BaseException:
        writer.abort()
        raise
    finally:
        if hasattr(plan.source, "close"):
            plan.source.close()  # the row-count session, when the dump failed before its counts
    extra = {"chunks": writer.chunks} if plan.max_chunk_size else {}
    if attachments is not None:
        extra["attachments"] = attachments
    return _store_manifest(plan, storage, started, artifact_key, manifest_key, metadata, outcome, table_counts,
                           extra or None)


def _store_manifest(plan, storage, started, artifact_key, manifest_key, metadata, outcome, table_counts, extra=None):
    record = manifest.build_manifest(
        plan.job, plan.kind, plan.timezone, plan.source, artifact_key, started, utc_now(), plan.compression, outcome,
        table_counts=table_counts, encryption=plan.encryption, extra=extra,
    )
    data = manifest.signed_bytes(plan.keyring, record)
    try:
        _as_storage_error(storage.put_small, manifest_key, data, metadata)
    except BaseException:
        # Without its manifest the artifact is not a backup: do not leave it looking like one.
        for key in manifest.object_keys(record):
            storage.delete(key)
        raise
    return manifest.decode(data), manifest_key


def _spool_instead(plan, cause):
    """The storage failed: take the backup again into the spool, then fail loudly saying where it is."""
    cause_text = str(cause)
    try:
        plan.spool.prepare()
        record, manifest_key = store_backup(plan, plan.spool.storage, utc_now())
    except BackupError as exc:
        raise BackupError("%s; keeping the backup in the spool failed too: %s" % (cause_text, exc))
    where = plan.spool.storage.location(manifest_key)
    raise BackupError(
        "%s. The backup was kept complete in the spool (%s); the next run with this spool_dir, or the "
        "songmetrix.backup.upload module with spool_dir, uploads it." % (cause_text, where),
        spooled=where, manifest=record,
    )


def run_backup(plan, check_mode=False):
    """Run (or, in check mode, validate and describe) one backup; returns the module result.

    A real run records its outcome in the job's last-attempt record (attempts.py), which prune
    reads: a failure there stops pruning until a backup succeeds again. It holds the job's locks
    (job_lock.py) from before the source is touched until its outcome is recorded; a run that
    finds them held by another run stops without recording anything: the other run records its own.
    """
    attempt = None if check_mode else AttemptLog(plan.storage, plan.prefix, plan.job, utc_now(), plan.secrets,
                                                 plan.keyring)
    locks = JobLocks(plan.lock_settings, plan.storage, plan.prefix, plan.job, plan.keyring)
    try:
        result = _run(plan, check_mode, attempt, locks)
    except BackupError as exc:
        if attempt is not None and not isinstance(exc, LockHeld):
            attempt.failed(utc_now(), exc)
        locks.release()
        warnings = (attempt.warnings if attempt is not None else []) + locks.warnings
        if warnings:
            exc.details["warnings"] = exc.details.get("warnings", []) + warnings
        raise
    finally:
        locks.release()
        plan.close()
    result["warnings"] = result.get("warnings", []) + (attempt.warnings if attempt is not None else []) + \
        locks.warnings
    return result


def _run(plan, check_mode, attempt, locks):
    locks.take_host_lock(check_mode)
    plan.source.preflight()
    spool_report = plan.spool.pending(plan.prefix, plan.job) if plan.spool else None
    try:
        plan.storage.preflight(create=not check_mode)
    except ValidationError:
        _storage_usable(attempt, False)
        raise
    except BackupError as exc:
        _storage_usable(attempt, False)
        if plan.spool is None or check_mode:
            raise
        _spool_instead(plan, exc)
    _storage_usable(attempt, True)
    locks.take_storage_lock(check_mode)

    if plan.spool and not check_mode:
        spool_report = plan.spool.drain(plan.prefix, plan.job)

    started = utc_now()
    artifact_key, manifest_key = plan.keys(started)
    result = {
        "artifact": artifact_key,
        "manifest_key": manifest_key,
        "path": plan.storage.location(artifact_key),
        "storage": plan.storage.describe(),
        "command": plan.source.argv(),
    }
    if spool_report is not None:
        result["spool"] = spool_report
    if check_mode:
        result["manifest"] = manifest.build_manifest(
            plan.job, plan.kind, plan.timezone, plan.source, artifact_key, started, None, plan.compression,
            encryption=plan.encryption,
        )
        result["changed"] = True
        return result

    try:
        record = store_backup(plan, plan.storage, started)[0]
    except StorageError as exc:
        _storage_usable(attempt, False)
        if plan.spool is None:
            raise
        _spool_instead(plan, exc)
    attempt.succeeded(started, utc_now(), manifest_key)
    if spool_report and spool_report.get("failed"):
        raise BackupError(
            "the backup was stored, but %d spooled backup(s) could not be uploaded: %s"
            % (len(spool_report["failed"]), "; ".join(item["error"] for item in spool_report["failed"])),
            manifest=record, spool=spool_report, artifact=artifact_key,
        )
    result.update(changed=True, manifest=record, warnings=list(getattr(plan.source, "warnings", [])),
                  artifact=record["artifact"], path=plan.storage.location(record["artifact"]))
    return result


def _storage_usable(attempt, usable):
    if attempt is not None:
        attempt.storage_usable = usable


def run_dump(params, check_mode=False):
    return run_backup(dump_plan(params), check_mode)


def run_upload(params, check_mode=False):
    """An existing file to storage; without ``src``, only what the spool holds."""
    if not params.get("src"):
        return run_spool_upload(params, check_mode)
    result = run_backup(upload_plan(params), check_mode)
    if params.get("remove_src") and not check_mode:
        # Only now: the artifact and its manifest are stored.
        try:
            os.unlink(params["src"])
        except OSError as exc:
            result.setdefault("warnings", []).append("could not remove %s: %s" % (params["src"], exc.strerror))
        else:
            result["src_removed"] = True
    return result


def run_spool_upload(params, check_mode=False):
    """Upload what the spool holds for a storage (one job, or all), without a new backup."""
    prefix = validation.storage_prefix(params["storage"].get("prefix"))
    job = validation.job_name(params["job"]) if params.get("job") else None
    keyring = Keyring(params.get("signing"))
    storage = make_storage(params["storage"])
    try:
        spool = Spool(spool_directory(params["spool_dir"]), storage, keyring)
        if check_mode:
            report = spool.pending(prefix, job)
            return {"changed": bool(report["pending"]), "spool": report, "storage": storage.describe()}
        storage.preflight(create=True)
        report = spool.drain(prefix, job)
        if report["failed"]:
            raise BackupError(
                "%d spooled backup(s) could not be uploaded: %s"
                % (len(report["failed"]), "; ".join(item["error"] for item in report["failed"])),
                spool=report,
            )
        return {"changed": bool(report["uploaded"]), "spool": report, "storage": storage.describe()}
    finally:
        storage.close()
