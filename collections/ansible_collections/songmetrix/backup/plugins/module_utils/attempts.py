"""The job's last-attempt record: one small object, <prefix>/<job>/last-attempt.json, replaced by each run.

A failed backup leaves no backup behind, so without a record a failure is invisible in storage.
prune reads the record and deletes nothing while the latest attempt has not succeeded: when
backups stop working, the history that is left is the only history there is.

The record is written at the end of a run: "ok" after the manifest, or "failed". A failure is
recorded only where it can be and where it matters: not when the storage itself failed (it could
not take the record either, and the spool has the backup), and not for a job with nothing in
storage yet, so that a run with bad input still writes nothing at all. A run that is killed
writes nothing; prune's max_age covers that case. Writing the record is best effort: it never
fails or hides a backup.

A job with a signing key signs the record (signing.py); read with that key, a record that is not
signed by it reads as status "unauthenticated" or "invalid", which prune treats like a failure.
"""

import json
import socket

from ansible_collections.songmetrix.backup.plugins.module_utils import layout
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.redact import redact_text
from ansible_collections.songmetrix.backup.plugins.module_utils.signing import Keyring

SIGNED_KIND = "attempt"  # what the signature says this record is

FORMAT_VERSION = 1
ERROR_LIMIT = 2000  # characters of the error kept in the record


class AttemptLog(object):
    """Writes the record for one run of one job."""

    def __init__(self, storage, prefix, job, started, secrets=(), keyring=None):
        self.storage = storage
        self.keyring = keyring or Keyring(None)
        self.secrets = list(secrets)  # masked in the error text, like the module's own output
        self.prefix = prefix
        self.key = layout.attempt_key(prefix, job)
        self.job = job
        self.started = started
        self.storage_usable = None  # None: not tried yet in this run
        self.status = None
        self.warnings = []

    def _write(self, status, finished=None, manifest_key=None, error=None):
        self.status = status
        record = {
            "format_version": FORMAT_VERSION,
            "job": self.job,
            "host": socket.gethostname(),
            "status": status,
            "started": layout.iso_utc(self.started),
            "finished": layout.iso_utc(finished) if finished else None,
            "manifest_key": manifest_key,
            "error": redact_text(error, self.secrets, min_length=3)[:ERROR_LIMIT] if error else None,
        }
        try:
            self.storage.replace_small(self.key, self.keyring.encode(SIGNED_KIND, record, encode))
        except BackupError as exc:
            self.warnings.append("could not record the attempt in %s: %s" % (self.storage.location(self.key), exc))

    def succeeded(self, started, finished, manifest_key):
        self.started = started
        self._write("ok", finished, manifest_key)

    def failed(self, finished, error):
        """Record a failure where the storage works and the job has something to protect."""
        if self.status == "ok" or self.storage_usable is False:
            return  # the backup is stored (a later step failed), or the storage cannot take it
        try:
            if self.storage_usable is None:
                self.storage.preflight(create=False)
            keys = (info.key for info in self.storage.list_keys(layout.job_folder(self.prefix, self.job)))
            if next((key for key in keys if not layout.is_status_key(key, self.prefix)), None) is None:
                return  # no history yet (the run's own lock aside): a first run with bad input leaves no record
        except BackupError:
            return
        self._write("failed", finished, error=str(error))


def encode(record):
    return (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")


def read_last(storage, prefix, job, keyring=None):
    """The job's last-attempt record as a dict, or None when there is none.

    ``authentication`` says how its signature checked out. With a key, a record the key did not sign
    has its status replaced by "unauthenticated" or "invalid" (what it claimed stays in ``claimed_status``).
    """
    key = layout.attempt_key(prefix, job)
    if not storage.exists(key):
        return None
    try:
        record, verdict = (keyring or Keyring(None)).check(SIGNED_KIND, storage.get_small(key), encode,
                                                           "the last-attempt record %s" % key)
    except ValueError:
        return {"status": "unreadable", "started": None, "error": "%s is not valid JSON" % key}
    record["authentication"] = verdict.as_dict()
    if keyring is not None and keyring.enabled and not verdict.ok:
        record["claimed_status"] = record.get("status")
        record["status"] = verdict.status
        record["error"] = verdict.problem
    return record
