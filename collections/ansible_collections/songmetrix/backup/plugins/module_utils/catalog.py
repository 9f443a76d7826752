"""The backups in a storage location, found by listing keys: a backup is a manifest of our layout.

One listing pass is enough: the job, kind and start time are in the manifest's key and the
artifact's size is in the listing, so 20,000 backups need about 40 list requests and no reads.
Manifest contents are read only when asked for (``details``), or when the job has a signing key:
then every listed manifest is read to say whether it is authenticated.
"""

import re
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.songmetrix.backup.plugins.module_utils import attempts, layout, manifest, validation
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.signing import (
    AUTHENTICATED,
    INVALID,
    UNAUTHENTICATED,
    Keyring,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import opened_storage

DETAIL_READERS = 8
# '<job>-<stamp>.<extension(s)>': the stem is everything up to the stamp (job names may hold dots).
_OBJECT_NAME_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*-\d{8}T\d{6}Z)\.")


class Backup(object):
    """One manifest found in a listing, with the objects that share its stem."""

    def __init__(self, manifest_info, parsed):
        self.manifest_key = manifest_info.key
        self.manifest_size = manifest_info.size
        self.job = parsed["job"]
        self.kind = parsed["kind"]
        self.started = parsed["started"]
        self.stem = parsed["stem"]
        self.objects = []
        self.record = None
        self.record_error = None
        self.verdict = None  # signing.Verdict once the manifest was read

    @property
    def authenticated(self):
        return self.verdict is not None and self.verdict.ok

    def authentication(self):
        """How the manifest's signature checked out, for results: {status, key_id, problem}."""
        if self.verdict is not None:
            return self.verdict.as_dict()
        if self.record_error is not None:
            return {"status": INVALID, "key_id": None, "problem": self.record_error}
        return {"status": UNAUTHENTICATED, "key_id": None, "problem": None}

    def as_dict(self, details=True):
        entry = {
            "manifest_key": self.manifest_key,
            "job": self.job,
            "kind": self.kind,
            "started": layout.iso_utc(self.started),
            "objects": sorted(info.key for info in self.objects),
            "stored_size": sum(info.size for info in self.objects),
        }
        if self.record is not None and details:
            entry["manifest"] = self.record
        return entry


class Listing(object):
    def __init__(self, backups, incomplete):
        self.backups = backups  # newest first
        self.incomplete = incomplete  # keys under job folders that belong to no manifest


def _stem_of(key, stems):
    """The backup stem an object belongs to (its key is '<stem>.<ext>...'), or None."""
    folder, _sep, name = key.rpartition("/")
    match = _OBJECT_NAME_RE.match(name)  # hidden temporary files (".name.partial-...") do not match
    if match:
        stem = "%s/%s" % (folder, match.group(1)) if folder else match.group(1)
        if stem in stems:
            return stem
    # An object in a folder of a backup's own: '<stem>.<name>/<path>' (Supabase Storage objects).
    parts = key.split("/")
    for index in range(len(parts) - 1):
        match = _OBJECT_NAME_RE.match(parts[index])
        if match:
            stem = "/".join(parts[:index] + [match.group(1)])
            if stem in stems and layout.key_in_backup(stem, key):
                return stem
    return None


def list_backups(storage, prefix="", job=None, kind=None, since=None, until=None):
    """Backups under ``prefix`` (optionally one job), filtered; a Listing, newest first."""
    found = {}
    others = []
    for info in storage.list_keys(layout.job_folder(prefix, job)):
        parsed = layout.parse_manifest_key(info.key, prefix)
        if parsed is None:
            if not layout.is_status_key(info.key, prefix):
                others.append(info)
        elif job is None or parsed["job"] == job:
            found[parsed["stem"]] = Backup(info, parsed)
    incomplete = []
    for info in others:
        stem = _stem_of(info.key, found)
        if stem is None:
            incomplete.append(info.key)
        else:
            found[stem].objects.append(info)
    backups = [
        b for b in found.values()
        if (kind is None or b.kind == kind)
        and (since is None or b.started >= since)
        and (until is None or b.started <= until)
    ]
    backups.sort(key=lambda b: b.started, reverse=True)
    return Listing(backups, sorted(incomplete))


def load_manifests(storage, backups, tolerate=False, keyring=None):
    """Read the manifests of ``backups`` (in parallel where the storage allows it) into .record, and
    how their signature checked out against ``keyring`` into .verdict.

    With ``tolerate``, a manifest that cannot be read or parsed leaves .record None and its
    error in .record_error instead of failing the whole listing.
    """
    def load(backup):
        try:
            backup.record, backup.verdict = manifest.read(storage, backup.manifest_key, keyring)
        except BackupError as exc:
            if not tolerate:
                raise
            backup.record_error = str(exc)
        return backup

    if getattr(storage, "concurrent_reads", False) and len(backups) > 1:
        with ThreadPoolExecutor(max_workers=DETAIL_READERS) as pool:
            list(pool.map(load, backups))
    else:
        for backup in backups:
            load(backup)
    return backups


def run_backup_info(params, check_mode=False):
    """The backup_info module: list, filter and (with details) read manifests. Reads only."""
    prefix = validation.storage_prefix(params["storage"].get("prefix"))
    job = validation.job_name(params["job"]) if params.get("job") else None
    since = validation.timestamp("since", params.get("since"))
    until = validation.timestamp("until", params.get("until"), end_of_day=True)
    if since and until and since > until:
        raise ValidationError("since (%s) is after until (%s)" % (params["since"], params["until"]))
    limit = 1 if params.get("latest") else params.get("limit")
    if limit is not None and limit < 1:
        raise ValidationError("limit must be 1 or more")
    if params.get("last_attempt") and not job:
        raise ValidationError("last_attempt needs a job: the record is kept per job")
    keyring = Keyring(params.get("signing"))
    with opened_storage(params["storage"]) as storage:
        storage.preflight(create=False)
        listing = list_backups(storage, prefix, job, params.get("kind"), since, until)
        selected = listing.backups[:limit] if limit else listing.backups
        if params.get("details") or keyring.enabled:
            load_manifests(storage, selected, tolerate=keyring.enabled, keyring=keyring)
        last_attempt = attempts.read_last(storage, prefix, job, keyring) if params.get("last_attempt") else None
        location = storage.location(layout.job_folder(prefix, job))
    backups = []
    for backup in selected:
        entry = backup.as_dict(details=bool(params.get("details")))
        entry["authentication"] = backup.authentication()
        backups.append(entry)
    flagged = [entry for entry in backups if keyring.enabled and entry["authentication"]["status"] != AUTHENTICATED]
    result = {
        "changed": False,
        "location": location,
        "count": len(backups),
        "total": len(listing.backups),
        "stored_bytes": sum(b["stored_size"] for b in backups),
        "backups": backups,
        "latest": backups[0] if backups else None,
        "incomplete": listing.incomplete,
    }
    if params.get("last_attempt"):
        result["last_attempt"] = last_attempt
    if keyring.enabled:
        result["unauthenticated"] = [entry["manifest_key"] for entry in flagged]
        if flagged:
            result["warnings"] = ["%d of %d backup(s) are not signed by this job's key %s: %s" % (
                len(flagged), len(backups), keyring.key_id,
                "; ".join(entry["authentication"]["problem"] or entry["manifest_key"] for entry in flagged[:5]))]
    return result
