"""One backup, end to end: validate everything, stream the dump to storage, write the manifest last."""

import datetime
import os
import tempfile

from ansible_collections.songmetrix.backup.plugins.module_utils import layout, manifest, validation
from ansible_collections.songmetrix.backup.plugins.module_utils.compression import (
    build_compressor,
    compressed_extension,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import stream
from ansible_collections.songmetrix.backup.plugins.module_utils.sources import make_source
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_local import LocalStorage


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def make_storage(params):
    if params.get("type", "local") == "local":
        return LocalStorage(params.get("path"))
    raise ValidationError("storage.type %r is not supported" % (params.get("type"),))


def spool_directory(path):
    path = path or tempfile.gettempdir()
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise ValidationError("spool_dir %s is not a writable directory" % path)
    return path


class DumpPlan(object):
    """Everything a dump needs, validated; building it runs nothing and writes nothing."""

    def __init__(self, params):
        self.job = validation.job_name(params["job"])
        self.kind = params.get("kind") or "scheduled"
        self.timezone = validation.timezone_name(params.get("timezone") or "UTC")
        storage_params = params["storage"]
        self.prefix = validation.storage_prefix(storage_params.get("prefix"))
        self.compressor = build_compressor(
            params.get("compression") or "zstd", params.get("compression_level"), params.get("compression_threads")
        )
        self.compression = (
            {"algorithm": "none", "level": None} if self.compressor is None else
            {"algorithm": self.compressor.info["algorithm"], "level": self.compressor.info["level"]}
        )
        self.spool_dir = spool_directory(params.get("spool_dir"))
        self.source = make_source(params["source"], self.spool_dir)
        self.storage = make_storage(storage_params)

    def extension(self):
        ext = self.source.extension
        if self.compressor is not None:
            ext += "." + compressed_extension(self.compression["algorithm"])
        return ext


def run_dump(params, check_mode=False):
    """Run (or, in check mode, validate and describe) one backup; returns the module result."""
    plan = DumpPlan(params)
    plan.source.preflight()
    plan.storage.preflight(create=not check_mode)

    started = utc_now()
    stem = layout.backup_stem(plan.prefix, plan.job, plan.kind, started)
    artifact_key = layout.artifact_key(stem, plan.extension())
    manifest_key = layout.manifest_key(stem)
    for key in (artifact_key, manifest_key):
        if plan.storage.exists(key):
            raise BackupError("a backup named %s already exists; wait a second and run again" % key)

    result = {
        "artifact": artifact_key,
        "manifest_key": manifest_key,
        "path": plan.storage.location(artifact_key),
        "command": plan.source.argv(),
    }
    if check_mode:
        result["manifest"] = manifest.build_manifest(
            plan.job, plan.kind, plan.timezone, plan.source, artifact_key, started, None, plan.compression
        )
        result["changed"] = True
        return result

    writer = plan.storage.open_writer(artifact_key)
    try:
        outcome = stream(plan.source.open(), [plan.compressor], writer, plan.source.stream_checks())
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finished = utc_now()
    record = manifest.build_manifest(
        plan.job, plan.kind, plan.timezone, plan.source, artifact_key, started, finished, plan.compression, outcome
    )
    try:
        plan.storage.put_small(manifest_key, manifest.encode(record))
    except BaseException:
        # Without its manifest the artifact is not a backup: do not leave it looking like one.
        plan.storage.delete(artifact_key)
        raise
    result.update(changed=True, manifest=record, warnings=list(getattr(plan.source, "warnings", [])))
    return result
