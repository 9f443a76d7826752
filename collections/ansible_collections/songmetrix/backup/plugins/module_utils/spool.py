"""The local spool: complete backups that could not be stored, kept until a later run uploads them.

Layout: <spool_dir>/songmetrix-spool/<target id>/<same keys as in the storage>, where the target id
is derived from the storage's identity (type, bucket or host, path; never credentials), so a
spooled backup only ever goes to the storage it was meant for. target.json beside the keys says
which storage that is. A spooled backup is removed only after its stored copy was read back and
its SHA-256 matched the manifest. The spool is a folder on disk that other local users may reach, so
a job with a signing key uploads only spooled backups whose manifest is signed with one of its keys.
"""

import hashlib
import json
import os

from ansible_collections.songmetrix.backup.plugins.module_utils import layout, manifest
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.signing import Keyring
from ansible_collections.songmetrix.backup.plugins.module_utils.integrity import (
    artifact_problem,
    copy_object,
    mismatch,
    read_digest,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import identity
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_local import LocalStorage

SPOOL_FOLDER = "songmetrix-spool"


class Spool(object):
    def __init__(self, spool_dir, target, keyring=None):
        self.target = target
        self.keyring = keyring or Keyring(None)
        self.target_id = hashlib.sha256(identity(target).encode("utf-8")).hexdigest()[:16]
        self.root = os.path.join(spool_dir, SPOOL_FOLDER, self.target_id)
        self.storage = LocalStorage(self.root)

    def prepare(self):
        """Create the spool folder and its target.json (once)."""
        self.storage.preflight(create=True)
        marker = os.path.join(self.root, "target.json")
        if not os.path.exists(marker):
            self.storage.put_small("target.json", json.dumps(self.target.describe(), indent=2).encode("utf-8"))

    def manifests(self, prefix="", job=None):
        """Manifest keys in the spool, oldest first, for one job (or every job under ``prefix``)."""
        if not os.path.isdir(self.root):
            return []
        under = layout.job_folder(prefix, job)
        keys = [info.key for info in self.storage.list_keys(under) if layout.parse_manifest_key(info.key, prefix)]
        return sorted(keys, key=lambda key: key.rsplit("/", 1)[-1])

    def pending(self, prefix="", job=None):
        return {"pending": self.manifests(prefix, job), "uploaded": [], "failed": []}

    def drain(self, prefix="", job=None):
        """Upload spooled backups, oldest first; returns what was uploaded and what failed (and why)."""
        report = {"pending": [], "uploaded": [], "failed": []}
        for key in self.manifests(prefix, job):
            try:
                self._drain_one(key)
            except BackupError as exc:
                report["failed"].append({"manifest_key": key, "error": str(exc)})
                report["pending"].append(key)
            else:
                report["uploaded"].append(key)
        return report

    def _drain_one(self, manifest_key):
        data = self.storage.get_small(manifest_key)
        record, verdict = manifest.check(data, manifest_key, self.keyring)
        if self.keyring.enabled and not verdict.ok:
            raise BackupError("spooled backup not uploaded: %s" % verdict.problem)
        artifact = record.get("artifact") or ""
        if not artifact.startswith(manifest_key[: -len(layout.MANIFEST_SUFFIX)] + "."):
            raise BackupError("spooled manifest %s names artifact %r outside its own stem" % (manifest_key, artifact))
        metadata = manifest.object_metadata(record)
        if not self.target.exists(manifest_key):
            # An artifact already there came from an earlier drain that stopped before its manifest.
            copied = not self.target.exists(artifact)
            if copied:
                copy_object(self.storage, self.target, artifact, metadata)
            problem = artifact_problem(self.target, record)[0]
            if problem:
                if copied:
                    self.target.delete(artifact)  # not a backup without its manifest; the spool keeps the original
                raise BackupError("uploaded copy of %s does not match its manifest: %s" % (artifact, problem))
            self._copy_attachments(record, metadata, manifest_key[: -len(layout.MANIFEST_SUFFIX)])
            self.target.put_small(manifest_key, data, metadata)
        else:
            problem = artifact_problem(self.target, record)[0]
            if problem:
                raise BackupError("stored copy of spooled backup %s is not intact: %s" % (manifest_key, problem))
        self.storage.delete(artifact)
        for item in manifest.attachments(record):
            self.storage.delete(item["key"])
        self.storage.delete(manifest_key)

    def _copy_attachments(self, record, metadata, stem):
        """The backup's other objects (attachments), each checked against its SHA-256, before its manifest."""
        for item in manifest.attachments(record):
            key = item.get("key")
            if not layout.key_in_backup(stem, key):
                raise BackupError("spooled manifest names attachment %r outside its own stem" % (key,))
            if not self.target.exists(key):
                copy_object(self.storage, self.target, key, metadata)
            size, sha256 = read_digest(self.target, key)
            problem = mismatch("attachment " + key, size, sha256, item.get("size"), item.get("sha256"))
            if problem:
                raise BackupError("uploaded copy of %s does not match its manifest: %s" % (key, problem))
