"""The restore module: stored artifact -> SHA-256 check -> decrypt -> decompress -> target database, file or folder.

Order: options, the backup's choice and its manifest, the target (connect, emptiness) are all
checked before anything is written. A target that cannot be rolled back (PostgreSQL custom or
plain format, MySQL/MariaDB) gets a verification read of the whole artifact first (verify_first),
so a damaged backup fails before loading; SQLite files, file trees and PostgreSQL directory
archives are written aside and become visible only once every stored byte matched.

What storage says is not believed: with a signing key only a manifest signed by the job's key is
restored; ``latest`` and ``before`` never pick a backup dated after now; a configured
``decryption`` refuses a backup that is not encrypted (a planted plaintext one would otherwise be
loaded without a word).
"""

import datetime
import hashlib
import time

from ansible_collections.songmetrix.backup.plugins.module_utils import (
    catalog,
    layout,
    manifest,
    restore_scratch,
    validation,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.compression import build_decompressor
from ansible_collections.songmetrix.backup.plugins.module_utils.encryption import (
    Decryptor,
    decryption_stages,
    plaintext_problem,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.integrity import mismatch, read_digest
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import ThreadProducer, stream
from ansible_collections.songmetrix.backup.plugins.module_utils.restore_targets import make_target
from ansible_collections.songmetrix.backup.plugins.module_utils.signing import Keyring
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import opened_storage
from ansible_collections.songmetrix.backup.plugins.module_utils.verification import manifest_problem, verify_backup


def _check_selection(params):
    chosen = [name for name in ("manifest_key", "latest", "before") if params.get(name)]
    if len(chosen) != 1:
        raise ValidationError("choose the backup with exactly one of manifest_key, latest: true (with job) or "
                              "before (with job); got %s" % (", ".join(chosen) or "none"))
    if chosen[0] != "manifest_key" and not params.get("job"):
        raise ValidationError("%s needs job" % chosen[0])
    if chosen[0] == "manifest_key" and (params.get("job") or params.get("kind")):
        raise ValidationError("manifest_key cannot be combined with job or kind")


def _select(storage, params, prefix, before, keyring, warnings, now):
    """(manifest key, record, signing.Verdict) of the backup to restore, its manifest read and checked."""
    if params.get("manifest_key"):
        key = params["manifest_key"]
        if layout.parse_manifest_key(key, prefix) is None:
            raise BackupError("%s is not a manifest key of this storage's layout (prefix %r)" % (key, prefix))
        return (key,) + _read_manifest(storage, key, keyring, params, warnings)
    job = validation.job_name(params["job"])
    listing = catalog.list_backups(storage, prefix, job, params.get("kind"), until=before)
    future = [b for b in listing.backups if b.started > now]
    if future:
        warnings.append("%d backup(s) of job %s dated after now were not considered (check the clock of the host "
                        "that made them, or who wrote them): %s" % (
                            len(future), job, ", ".join(b.manifest_key for b in future[:5])))
    candidates = [b for b in listing.backups if b.started <= now]
    if not candidates:
        when = " started at or before %s" % layout.iso_utc(before) if before else ""
        raise BackupError("no backup of job %s%s found in %s" % (job, when, storage.location(
            layout.job_folder(prefix, job))))
    if not keyring.enabled or params.get("allow_unauthenticated"):
        key = candidates[0].manifest_key
        return (key,) + _read_manifest(storage, key, keyring, params, warnings)
    # With a key the newest backup the key signed, under its own name, is the latest: a planted newer one
    # and an old signed manifest copied under a newer name (a rollback) are passed over, by name.
    skipped = []
    for backup in candidates:
        catalog.load_manifests(storage, [backup], tolerate=True, keyring=keyring)
        problem = (backup.authentication()["problem"] if not backup.authenticated
                   else manifest_problem(backup.record, backup.manifest_key))
        if problem is None:
            if skipped:
                warnings.append("passed over %d newer backup(s) of job %s that are not signed by its key %s or "
                                "not where it signed them: %s" % (len(skipped), job, keyring.key_id,
                                                                  "; ".join(skipped[:5])))
            return backup.manifest_key, backup.record, backup.verdict
        skipped.append(problem)
    raise BackupError("no backup of job %s is signed by its key %s; nothing was restored (%s)" % (
        job, keyring.key_id, "; ".join(skipped[:5])))


def _read_manifest(storage, key, keyring, params, warnings):
    record, verdict = manifest.read(storage, key, keyring)
    return _checked(record, verdict, key, params, warnings, keyring.enabled), verdict


def _checked(record, verdict, key, params, warnings, signed_job=True):
    """The manifest ``record`` if it may be restored: authenticated (for a job with a key) and sound."""
    if signed_job and not verdict.ok:
        if not params.get("allow_unauthenticated"):
            raise BackupError("%s; nothing was restored (allow_unauthenticated: true restores it anyway, if you "
                              "know where it came from)" % verdict.problem, manifest_key=key)
        warnings.append("restoring a backup that is not authenticated (allow_unauthenticated): %s" % verdict.problem)
    problem = manifest_problem(record, key)
    if problem:
        raise BackupError(problem)
    return record


def _decryptor(record, params, key, warnings):
    """The Decryptor for an encrypted backup (None for a plain one); checks the key before anything runs.

    A plain backup where ``decryption`` is given is refused: the job encrypts its backups, so a plain one
    was written by someone else or before encryption was turned on; ``allow_unencrypted`` says which."""
    if not record.get("encryption"):
        if params.get("decryption") and not params.get("allow_unencrypted"):
            raise BackupError("backup %s is not encrypted, but decryption is configured: this job's backups are "
                              "encrypted, so this one was not written by it (or before it was encrypted; "
                              "allow_unencrypted: true restores it anyway); nothing was restored" % key,
                              manifest_key=key)
        if params.get("decryption"):
            warnings.append("backup %s is not encrypted; restored because allow_unencrypted is set" % key)
        return None
    return Decryptor(record["encryption"], params.get("decryption"), "backup %s" % key)


def read_stored(storage, record, sink):
    """(size, sha256) of the whole stored artifact read in order (chunks too); ``sink`` sees every byte."""
    chunks = record.get("chunks") or []
    if not chunks:
        return read_digest(storage, record["artifact"], sink)
    whole = hashlib.sha256()
    total = 0

    def both(data):
        whole.update(data)
        sink(data)

    for chunk in chunks:
        size, sha256 = read_digest(storage, chunk["key"], both)
        total += size
        problem = mismatch("chunk " + chunk["key"], size, sha256, chunk.get("size"), chunk.get("sha256"))
        if problem:
            raise BackupError(problem)
    return total, whole.hexdigest()


def _streamer(storage, record, counter, decryptor):
    """read(writer): the stored artifact, decrypted and decompressed, into ``writer``; raises unless it matched
    the manifest."""

    def read(writer):
        stages = decryption_stages(decryptor) + [build_decompressor((record.get("compression") or {}).get("algorithm"))]
        state = {}

        def produce(out):
            state["size"], state["sha256"] = read_stored(storage, record, out.write)

        try:
            result = stream(ThreadProducer("read %s" % record["artifact"], produce), stages, writer, [])
            problem = plaintext_problem(record, result, "artifact " + record["artifact"])
            if problem:
                raise BackupError(problem)
            if hasattr(writer, "finish"):
                writer.finish()
        except BackupError as exc:
            if hasattr(writer, "abort"):
                writer.abort()
            problem = _mismatch(record, state)
            raise BackupError("%s (%s)" % (problem, exc) if problem else str(exc))
        counter["bytes_read"] += state["size"]
        counter["sha256"] = state["sha256"]
        problem = _mismatch(record, state)
        if problem:
            raise BackupError(problem)

    return read


def _mismatch(record, state):
    if "sha256" not in state:
        return None
    return mismatch("artifact " + record["artifact"], state["size"], state["sha256"], record.get("stored_size"),
                    record.get("sha256"))


def _restore(storage, params, key, record, scratch, check_mode, decryptor, authenticated=False):
    target_params, options = (scratch.target_params, scratch.options) if scratch else (params["target"], params)
    target = make_target(target_params, options, record, authenticated=authenticated)
    actions = target.preflight()
    if scratch is not None and scratch.engine in restore_scratch.NAME_LIMITS and target.exists:
        raise BackupError("the scratch database %s exists already" % scratch.name, manifest_key=key)
    result = {
        "changed": True,
        "manifest_key": key,
        "manifest": record,
        "engine": record.get("engine"),
        "target": target.describe(),
        "actions": actions,
        "bytes_read": 0,
        "sha256": None,
    }
    if target.command:
        result["command"] = list(target.command)
    counter = {"bytes_read": 0, "sha256": None}
    if check_mode or (params.get("verify_first", True) and not target.checked_before_visible):
        verified = verify_backup(storage, key, record)
        counter["bytes_read"] += verified["checked_bytes"]
        if not verified["ok"]:
            raise BackupError("%s: nothing was restored" % verified["problem"], manifest_key=key,
                              bytes_read=counter["bytes_read"])
        counter["sha256"] = record["sha256"]
    if check_mode:
        if scratch is not None:
            result["actions"] = actions + ["count the rows of every table and compare them with the manifest",
                                           "remove the scratch %s" % scratch.name]
        return result, counter, target
    if scratch is None:
        _load(target, storage, record, key, counter, decryptor)
        return result, counter, target
    report = {"scratch": scratch.name, "dropped": False, "tables": [], "assertions": [], "ok": False}
    warnings = getattr(target, "warnings", None)
    if warnings is None:
        warnings = target.warnings = []
    try:
        scratch.created = True
        _load(target, storage, record, key, counter, decryptor)
        report = restore_scratch.run_test(scratch, target, record, params, warnings)
    except BackupError as exc:
        report["dropped"] = _drop(scratch, target, params, warnings)
        exc.details.setdefault("manifest_key", key)
        exc.details["restore_test"] = report
        raise
    report["dropped"] = _drop(scratch, target, params, warnings)
    result["restore_test"] = report
    result["changed"] = not report["dropped"]
    if not report["ok"]:
        raise BackupError(restore_scratch.failure_message(report), manifest_key=key, restore_test=report,
                          bytes_read=counter["bytes_read"])
    return result, counter, target


def _drop(scratch, target, params, warnings):
    if params.get("keep_scratch"):
        warnings.append("keep_scratch: the scratch %s was kept" % scratch.name)
        return False
    try:
        return scratch.drop(target)
    except BackupError as exc:
        warnings.append("the scratch %s could not be removed: %s" % (scratch.name, exc))
        return False


def _attachment_streamer(storage, record, counter, decryptor):
    """open(item) -> read(writer): one attachment, decrypted and decompressed like the artifact, checked
    against its own size and SHA-256 (for targets that load attachments, e.g. Supabase roles)."""

    def open_item(item):
        return _streamer(storage, dict(record, artifact=item["key"], chunks=[], stored_size=item.get("size"),
                                       sha256=item.get("sha256")), counter, decryptor)

    return open_item


def _load(target, storage, record, key, counter, decryptor):
    target.prepare()
    try:
        if hasattr(target, "load_attachments"):
            target.load_attachments(_attachment_streamer(storage, record, counter, decryptor))
        target.load(_streamer(storage, record, counter, decryptor))
    except BackupError as exc:
        if target.checked_before_visible:
            raise BackupError("%s: the target was left as it was" % exc, manifest_key=key)
        raise BackupError("%s: the target may hold a partial restore" % exc, manifest_key=key)


def run_restore(params, check_mode=False):
    started = time.time()
    prefix = validation.storage_prefix(params["storage"].get("prefix"))
    _check_selection(params)
    before = validation.timestamp("before", params.get("before"))
    if params.get("jobs") is not None and params["jobs"] < 1:
        raise ValidationError("jobs must be 1 or more")
    restore_scratch.check_options(params)
    keyring = Keyring(params.get("signing"))
    warnings = []
    with opened_storage(params["storage"]) as storage:
        storage.preflight(create=False)
        now = datetime.datetime.now(datetime.timezone.utc)
        key, record, verdict = _select(storage, params, prefix, before, keyring, warnings, now)
        decryptor = _decryptor(record, params, key, warnings)
        scratch = None
        try:
            scratch = restore_scratch.Scratch(params, record, check_mode) if params.get("scratch") else None
            # Only a backup the job's key signed may bring back setuid/setgid files (owners restored as root).
            result, counter, target = _restore(storage, params, key, record, scratch, check_mode, decryptor,
                                               authenticated=keyring.enabled and verdict.ok)
        finally:
            if scratch is not None and scratch.tempdir and not params.get("keep_scratch"):
                scratch.drop(None)
            if decryptor is not None:
                decryptor.close()
    result["bytes_read"] = counter["bytes_read"]
    result["sha256"] = counter["sha256"]
    result["duration_seconds"] = round(time.time() - started, 3)
    warnings += getattr(target, "warnings", None) or []
    if warnings:
        result["warnings"] = warnings
    return result
