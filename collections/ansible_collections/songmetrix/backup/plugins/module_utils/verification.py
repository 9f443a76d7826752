"""Verify one stored backup: the manifest is sound, every stored byte matches its SHA-256, and
(deep) the decompressed stream is a complete dump of its format.

The deep check runs in the same single read as the hash: storage -> sha256 -> decompressor ->
format checker (pg_restore, tar, or a footer/header check), so a backup is read once.
"""

import hashlib

from ansible_collections.songmetrix.backup.plugins.module_utils import catalog, layout, manifest, validation
from ansible_collections.songmetrix.backup.plugins.module_utils.compression import Transform, build_decompressor
from ansible_collections.songmetrix.backup.plugins.module_utils.encryption import (
    Decryptor,
    decryption_stages,
    plaintext_problem,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.integrity import (
    artifact_problem,
    mismatch,
    read_digest,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import (
    HeadCheck,
    StopsEarly,
    TailCheck,
    ThreadProducer,
    stream,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.pg_client import pg_restore_for
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import find_tool
from ansible_collections.songmetrix.backup.plugins.module_utils.signing import INVALID, Keyring
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import opened_storage

REQUIRED_FIELDS = ("format_version", "job", "artifact", "sha256", "stored_size", "compression")
FOOTERS = {
    "postgresql": b"-- PostgreSQL database dump complete",
    "mysql": b"-- Dump completed",
    "mariadb": b"-- Dump completed",
}


def manifest_problem(record, manifest_key):
    """What is wrong with a manifest as a record, before any artifact is read (None when sound)."""
    if not isinstance(record, dict):
        return "manifest %s is not a JSON object" % manifest_key
    missing = [name for name in REQUIRED_FIELDS if record.get(name) in (None, "")]
    if missing:
        return "manifest %s lacks %s" % (manifest_key, ", ".join(missing))
    stem = manifest_key[: -len(layout.MANIFEST_SUFFIX)]
    named = layout.stem_identity(stem)
    if named is not None and (record.get("job"), record.get("started")) != named:
        # A manifest is bound to its key: copied under another job or date, it does not say what it is.
        return "manifest %s says job %r started %r, but its key says job %r started %r" % (
            manifest_key, record.get("job"), record.get("started"), named[0], named[1])
    for key in manifest.object_keys(record):
        # A manifest may only point at objects of its own backup: never at another path or folder.
        if not layout.key_in_backup(stem, key):
            return "manifest %s points at %r, outside its own backup" % (manifest_key, key)
    return None


class _SinkWriter(object):
    """Pipeline writer for the checker's output: feeds stream checks, keeps nothing."""

    def __init__(self, checks):
        self.checks = checks
        self.size = 0

    def write(self, data):
        self.size += len(data)
        for check in self.checks:
            check.feed(data)


def _format_stages(record):
    """(extra transforms, output checks) that prove the decompressed stream is a complete dump."""
    fmt = record.get("format")
    engine = record.get("engine")
    if fmt == "custom":
        # pg_restore reads every block (TOC and data) and fails on a damaged or cut archive.
        tool = pg_restore_for(record)
        return [Transform("pg_restore", [tool, "--file=/dev/null"], {})], []
    if fmt in ("tar", "directory"):
        # tar -t exits at the end-of-archive blocks; what follows them is read for it and must be zero
        # padding (StopsEarly). -b 1: tar reads block by block, so it stops right after those blocks and
        # nothing after them escapes that check (about 8% slower than -b 20 on an uncompressed tar).
        tar = Transform("tar", [find_tool("tar", package_hint="tar"), "-t", "-b", "1", "-f", "-"], {})
        return [StopsEarly(tar, "the end-of-archive blocks")], []
    if fmt in ("plain", "sql") and engine in FOOTERS:
        return [], [TailCheck(FOOTERS[engine], "%s dump footer" % engine, window=4096)]
    if fmt == "sqlite3":
        return [], [HeadCheck(b"SQLite format 3\x00", "SQLite database header")]
    return [], []


def _deep_read(storage, record, decryptor=None):
    """Read the artifact once: hash it and push it through decryption, decompression and the format check."""
    decompressor = build_decompressor((record.get("compression") or {}).get("algorithm"))
    extra, checks = _format_stages(record)
    read = {}

    def produce(out):
        read["digest"] = read_digest(storage, record["artifact"], out.write)

    sink = _SinkWriter(checks)
    result = stream(ThreadProducer("read %s" % record["artifact"], produce),
                    decryption_stages(decryptor) + [decompressor] + extra, sink, [])
    problem = plaintext_problem(record, result, "artifact " + record["artifact"])
    if problem:
        raise BackupError(problem)
    for check in checks:
        message = check.finish(sink.size)
        if message:
            raise BackupError(message)
    return read["digest"]


def verify_backup(storage, manifest_key, record, deep=False, decryptor=None):
    """{manifest_key, ok, problem, checked_bytes, deep} for one backup; never raises for a bad backup.

    A deep check of an encrypted backup needs its ``decryptor`` (encryption.Decryptor)."""
    result = {"manifest_key": manifest_key, "ok": False, "problem": None, "checked_bytes": 0, "deep": deep}
    problem = manifest_problem(record, manifest_key)
    if problem:
        result["problem"] = problem
        return result
    artifact = record["artifact"]
    result["artifact"] = artifact
    try:
        if record.get("chunks"):
            result["problem"], result["checked_bytes"] = _chunks_problem(storage, record)
        else:
            deep_read = (lambda store, key: _deep_read(store, record, decryptor)) if deep else read_digest
            result["problem"], result["checked_bytes"] = artifact_problem(storage, record, deep_read)
        if result["problem"] is None:
            result["problem"], checked = _attachments_problem(storage, record)
            result["checked_bytes"] += checked
    except BackupError as exc:
        result["problem"] = "artifact %s: %s" % (artifact, exc)
    result["ok"] = result["problem"] is None
    return result


def _chunks_problem(storage, record):
    """A split artifact: every chunk against its own SHA-256, and all of them against the whole's."""
    whole = hashlib.sha256()
    total = 0
    for chunk in record["chunks"]:  # a missing chunk is named before any is read
        if not storage.exists(chunk["key"]):
            return "chunk %s is missing" % chunk["key"], total
    for chunk in record["chunks"]:
        size, sha256 = read_digest(storage, chunk["key"], whole.update)
        total += size
        problem = mismatch("chunk " + chunk["key"], size, sha256, chunk.get("size"), chunk.get("sha256"))
        if problem:
            return problem, total
    return mismatch("artifact " + record["artifact"], total, whole.hexdigest(), record["stored_size"],
                    record["sha256"]), total


def _attachments_problem(storage, record):
    """Each object stored beside the artifact (stripes, extra artifacts) against its own size and SHA-256."""
    total = 0
    for item in manifest.attachments(record):
        if not item.get("key") or not item.get("sha256"):
            return "the manifest names an attachment without key or sha256", total
        if not storage.exists(item["key"]):
            return "attachment %s is missing" % item["key"], total
        size, sha256 = read_digest(storage, item["key"])
        total += size
        problem = mismatch("attachment " + item["key"], size, sha256, item.get("size"), item["sha256"])
        if problem:
            return problem, total
    return None, total


def _selected_manifest_keys(storage, params, prefix):
    if params.get("manifest_key"):
        key = params["manifest_key"]
        if layout.parse_manifest_key(key, prefix) is None:
            raise BackupError("%s is not a manifest key of this storage's layout (prefix %r)" % (key, prefix))
        return [key]
    job = validation.job_name(params["job"])
    listing = catalog.list_backups(storage, prefix, job, params.get("kind"))
    backups = listing.backups[: params["limit"]] if params.get("limit") else listing.backups
    if not backups:
        raise BackupError("no backups of job %s found in %s" % (job, storage.location(layout.job_folder(prefix, job))))
    return [backup.manifest_key for backup in backups]


def _verify_key(storage, key, deep, decryption, keyring):
    try:
        record, verdict = manifest.read(storage, key, keyring)
    except BackupError as exc:
        problem = str(exc) if str(exc).startswith("manifest ") else "manifest %s: %s" % (key, exc)
        return {"manifest_key": key, "ok": False, "problem": problem, "checked_bytes": 0, "deep": deep,
                "authentication": {"status": INVALID, "key_id": None, "problem": problem}}
    if keyring.enabled and not verdict.ok:
        # Not this job's backup as far as anyone can tell: its bytes prove nothing, so none are read.
        return {"manifest_key": key, "ok": False, "problem": verdict.problem, "checked_bytes": 0, "deep": deep,
                "authentication": verdict.as_dict()}
    if not (deep and record.get("encryption")):
        result = verify_backup(storage, key, record, deep)
    else:
        # A missing or unusable key is the caller's mistake, not a bad backup: it fails the task.
        decryptor = Decryptor(record["encryption"], decryption, "backup %s" % key)
        try:
            result = verify_backup(storage, key, record, deep, decryptor)
        finally:
            decryptor.close()
    result["authentication"] = verdict.as_dict()
    return result


def run_verify(params, check_mode=False):
    """Verify the selected backups (read only, so check mode changes nothing); fails when any is bad."""
    prefix = validation.storage_prefix(params["storage"].get("prefix"))
    if params.get("limit") is not None and params["limit"] < 1:
        raise BackupError("limit must be 1 or more (the number of newest backups to verify)")
    keyring = Keyring(params.get("signing"))
    with opened_storage(params["storage"]) as storage:
        storage.preflight(create=False)
        keys = _selected_manifest_keys(storage, params, prefix)
        results = [_verify_key(storage, key, params.get("deep"), params.get("decryption"), keyring) for key in keys]
    failed = [r for r in results if not r["ok"]]
    outcome = {"changed": False, "backups": results, "verified": len(results) - len(failed), "bad": len(failed)}
    if failed:
        raise BackupError(
            "%d of %d backup(s) failed verification: %s"
            % (len(failed), len(results), "; ".join(r["problem"] for r in failed)),
            **outcome
        )
    return outcome
