"""The restore module: stored artifact -> SHA-256 check -> decrypt -> decompress -> target database, file or folder.

Order: options, the backup's choice and its manifest, the target (connect, emptiness) are all
checked before anything is written. A target that cannot be rolled back (PostgreSQL custom or
plain format, MySQL/MariaDB) gets a verification read of the whole artifact first (verify_first),
so a damaged backup fails before loading; SQLite files, file trees and PostgreSQL directory
archives are written aside and become visible only once every stored byte matched.
"""

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


def _select(storage, params, prefix, before):
    if params.get("manifest_key"):
        key = params["manifest_key"]
        if layout.parse_manifest_key(key, prefix) is None:
            raise BackupError("%s is not a manifest key of this storage's layout (prefix %r)" % (key, prefix))
        return key
    job = validation.job_name(params["job"])
    listing = catalog.list_backups(storage, prefix, job, params.get("kind"), until=before)
    if not listing.backups:
        when = " started at or before %s" % layout.iso_utc(before) if before else ""
        raise BackupError("no backup of job %s%s found in %s" % (job, when, storage.location(
            layout.job_folder(prefix, job))))
    return listing.backups[0].manifest_key


def _read_manifest(storage, key):
    try:
        record = manifest.decode(storage.get_small(key))
    except ValueError as exc:
        raise BackupError("manifest %s is not valid JSON: %s" % (key, exc))
    problem = manifest_problem(record, key)
    if problem:
        raise BackupError(problem)
    return record


def _decryptor(record, params, key):
    """The Decryptor for an encrypted backup (None for a plain one); checks the key before anything runs.

    ``decryption`` given for a plain backup is ignored: a job keeps its key while older backups
    from before it was encrypted are still restored."""
    if not record.get("encryption"):
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


def _restore(storage, params, key, record, scratch, check_mode, decryptor):
    target_params, options = (scratch.target_params, scratch.options) if scratch else (params["target"], params)
    target = make_target(target_params, options, record)
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
    with opened_storage(params["storage"]) as storage:
        storage.preflight(create=False)
        key = _select(storage, params, prefix, before)
        record = _read_manifest(storage, key)
        decryptor = _decryptor(record, params, key)
        scratch = None
        try:
            scratch = restore_scratch.Scratch(params, record, check_mode) if params.get("scratch") else None
            result, counter, target = _restore(storage, params, key, record, scratch, check_mode, decryptor)
        finally:
            if scratch is not None and scratch.tempdir and not params.get("keep_scratch"):
                scratch.drop(None)
            if decryptor is not None:
                decryptor.close()
    result["bytes_read"] = counter["bytes_read"]
    result["sha256"] = counter["sha256"]
    result["duration_seconds"] = round(time.time() - started, 3)
    warnings = getattr(target, "warnings", None)
    if warnings:
        result["warnings"] = list(warnings)
    return result
