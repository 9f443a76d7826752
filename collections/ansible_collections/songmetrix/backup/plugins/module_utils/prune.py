"""The prune module: apply a job's retention policy to its backups in storage, with safety rails.

retention.plan() decides what the policy keeps. This module adds what a policy cannot know:
- the newest good backup (its manifest reads, its artifact is there with the recorded size) and
  the ``min_keep`` newest backups are always kept;
- nothing is deleted while a backup of the job holds its storage lock (job_lock.py: its new
  backup is not listed yet, and its outcome is not recorded yet), while the job's latest
  attempt has not succeeded (attempts.py), or when its
  newest good backup is older than ``max_age``: when backups stop working, keep what is left;
- a run that would delete more than ``max_delete_fraction`` of the job's backups stops and asks
  for ``force`` (a wrong policy or a clock jump must not wipe the history in one run);
- only objects of this job's manifests are deleted: the one object beside a manifest with its
  stem, or, where several share the stem, the keys the manifest names (a backup whose manifest
  then cannot be read is kept, with a warning); every manifest goes before its objects, so an
  interrupted prune never leaves a manifest pointing at missing data (only leftovers that
  backup_info reports as incomplete).

With a signing key (signing.py) every manifest of the job is read and checked, and the rules count
only backups the key signed: a planted backup, however new, cannot push a real one out. An unsigned
one (planted, or from before the job had a key) is kept where the policy over the whole history
would keep it, and deleted where it would not; one with a bad signature is kept and named.
"""

import datetime

from ansible_collections.songmetrix.backup.plugins.module_utils import catalog, layout, manifest, retention, validation
from ansible_collections.songmetrix.backup.plugins.module_utils.attempts import read_last
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.job_lock import describe_holder, holder_of, is_stale
from ansible_collections.songmetrix.backup.plugins.module_utils.signing import INVALID, Keyring
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import opened_storage
from ansible_collections.songmetrix.backup.plugins.module_utils.verification import manifest_problem

# What deleting a backup did: its objects are gone, or (a versioned S3 bucket) they got delete markers.
DELETED = "deleted"
DELETE_MARKER = "delete_marker"


class Settings(object):
    """The module's options, checked before the storage is touched."""

    def __init__(self, params):
        self.job = validation.job_name(params["job"])
        self.prefix = validation.storage_prefix(params["storage"].get("prefix"))
        self.policy = params.get("retention") or {}
        retention.check_policy(self.policy)
        self.timezone = validation.timezone_name(params.get("timezone") or "UTC")
        self.include_manual = bool(params.get("include_manual"))
        self.min_keep = params.get("min_keep", 1)
        if self.min_keep is None or self.min_keep < 1:
            raise ValidationError("min_keep must be 1 or more: prune always keeps the newest good backup")
        max_age = params.get("max_age")
        self.max_age = retention.parse_duration(max_age, "max_age") if max_age else None
        self.max_age_text = max_age
        self.max_fraction = params.get("max_delete_fraction", 0.5)
        if self.max_fraction is None or not 0 < self.max_fraction <= 1:
            raise ValidationError("max_delete_fraction must be more than 0 and at most 1, not %s" % self.max_fraction)
        self.force = bool(params.get("force"))
        self.keyring = Keyring(params.get("signing"))


def _intact(backup):
    """Whether a backup looks whole from its manifest and the listing alone (no artifact read)."""
    if backup.record is None or manifest_problem(backup.record, backup.manifest_key):
        return False
    sizes = {info.key: info.size for info in backup.objects}
    return all(sizes.get(key) == size for key, size in manifest.stored_objects(backup.record))


def newest_good(storage, backups):
    """The newest backup (of ``backups``, newest first) that looks whole, or None."""
    for backup in backups:
        if backup.record is None and backup.record_error is None:
            catalog.load_manifests(storage, [backup], tolerate=True)
        if _intact(backup):
            return backup
    return None


def plan_deletion(storage, backups):
    """Set .doomed_objects on each of ``backups``: the objects that go with its manifest.

    A backup as dump writes it has one object beside its manifest, with the manifest's stem:
    that object goes with it, and the manifest need not be read (pruning 10,000 backups must
    not cost 10,000 reads). Where more objects share the stem (chunks, or files someone put
    there), the manifest is read and only the keys it names go. Returns the backups whose
    manifest had to be read and cannot be trusted (unreadable, or naming keys outside its
    backup): those must be kept.
    """
    to_read = [b for b in backups if len(b.objects) > 1]
    for backup in backups:
        if len(backup.objects) <= 1:
            backup.doomed_objects = list(backup.objects)
    catalog.load_manifests(storage, [b for b in to_read if b.record is None], tolerate=True)
    untrusted = []
    for backup in to_read:
        if backup.record is None or manifest_problem(backup.record, backup.manifest_key):
            untrusted.append(backup)
            continue
        named = set(manifest.object_keys(backup.record))
        backup.doomed_objects = [info for info in backup.objects if info.key in named]
    return untrusted


def _stop_reason(settings, attempt, good, now, deleting, considered, lock_holder=None):
    """Why this run must delete nothing, and whether that is a failure (True) or a skip (False)."""
    if not deleting:
        return None, False  # nothing would go: nothing to stop
    if lock_holder is not None and not is_stale(lock_holder, now):
        return "job %s is locked by %s; nothing is pruned while it runs" % (
            settings.job, describe_holder(lock_holder)), False
    if attempt is not None and attempt.get("status") != "ok":
        return (
            "the latest backup attempt of job %s (started %s on %s) did not succeed (%s%s); nothing is "
            "pruned until a backup succeeds"
            % (settings.job, attempt.get("started"), attempt.get("host") or "an unknown host", attempt.get("status"),
               ": %s" % attempt["error"] if attempt.get("error") else ""),
            False,
        )
    if good is None:
        signed = " signed by its key %s" % settings.keyring.key_id if settings.keyring.enabled else ""
        return "no intact backup of job %s%s was found; nothing is pruned" % (settings.job, signed), False
    if settings.max_age is not None and good.started <= retention.within_cutoff(now, settings.max_age):
        return (
            "the newest good backup of job %s (%s) is older than max_age %s; nothing is pruned until a "
            "backup succeeds" % (settings.job, layout.iso_utc(good.started), settings.max_age_text),
            False,
        )
    if deleting > settings.max_fraction * considered and not settings.force:
        return (
            "the policy would delete %d of the %d backups of job %s, more than max_delete_fraction %s; check the "
            "policy and the clocks, then run again with force: true" % (
                deleting, considered, settings.job, settings.max_fraction),
            True,
        )
    return None, False


def _kept_entry(backup, reasons):
    return {
        "manifest_key": backup.manifest_key,
        "started": layout.iso_utc(backup.started),
        "kind": backup.kind,
        "reasons": reasons,
    }


def _deleted_entry(backup, outcome=DELETED):
    return {
        "manifest_key": backup.manifest_key,
        "started": layout.iso_utc(backup.started),
        "kind": backup.kind,
        "objects": sorted(info.key for info in backup.doomed_objects),
        "stored_size": backup.manifest_size + sum(info.size for info in backup.doomed_objects),
        "outcome": outcome,
    }


def _authenticate(settings, storage, considered, reasons, warnings, now):
    """The backups the rules may count: with a key, those it signed. Decides the others' reasons too."""
    keyring = settings.keyring
    if not keyring.enabled:
        return considered
    catalog.load_manifests(storage, [b for b in considered if b.record is None and b.record_error is None],
                           tolerate=True, keyring=keyring)
    signed = [b for b in considered if b.authenticated]
    unsigned = [b for b in considered if not b.authenticated and b.verdict is not None
                and b.verdict.status != INVALID]
    bad = [b for b in considered if not b.authenticated and b not in unsigned]
    if unsigned:
        whole = retention.plan(considered, settings.policy, settings.timezone, now=now)
        kept = set(b.manifest_key for b, _r in whole.keep)
        for backup in unsigned:
            if backup.manifest_key in kept:
                reasons[backup.manifest_key] = ["unauthenticated"]
        names = ", ".join(b.manifest_key for b in unsigned[:5])
        warnings.append("%d backup(s) of job %s are not signed by its key %s: the rules do not count them, so they "
                        "cannot push a signed one out (%s)" % (len(unsigned), settings.job, keyring.key_id, names))
    for backup in bad:
        reasons[backup.manifest_key] = ["invalid signature"]
        warnings.append("%s is kept: %s; check it with songmetrix.backup.verify and remove it by hand" % (
            backup.manifest_key, backup.authentication()["problem"]))
    return signed


def decide(settings, storage, listing, attempt, now, lock_holder=None):
    """(keep [(backup, reasons)], delete [backup], warnings, stop reason, stop is a failure)."""
    considered = [b for b in listing.backups if settings.include_manual or b.kind != "manual"]
    warnings = []
    reasons = {}
    counted = _authenticate(settings, storage, considered, reasons, warnings, now)
    plan = retention.plan(counted, settings.policy, settings.timezone, now=now)
    for backup, why in plan.keep:
        reasons[backup.manifest_key] = list(why)
    present = [b for b in counted if b.started <= now]
    good = newest_good(storage, present)
    protected = [(b, "min_keep") for b in present[: settings.min_keep]]
    if good is not None:
        protected.append((good, "newest good"))
    for backup, reason in protected:
        reasons.setdefault(backup.manifest_key, []).append(reason)

    future = [b for b in considered if b.started > now]
    if future:
        warnings.append(
            "%d backup(s) of job %s are dated in the future (the newest %s); they are kept and not counted by "
            "the retention rules: check the clock of the host that made them"
            % (len(future), settings.job, layout.iso_utc(future[0].started))
        )
    for backup in plan_deletion(storage, [b for b in considered if b.manifest_key not in reasons]):
        reasons[backup.manifest_key] = ["unreadable manifest"]
        warnings.append(
            "%s is kept: %s; check it with songmetrix.backup.verify and remove it by hand"
            % (backup.manifest_key, backup.record_error or manifest_problem(backup.record, backup.manifest_key))
        )
    keep = [(b, reasons[b.manifest_key]) for b in listing.backups if b.manifest_key in reasons]
    keep += [(b, ["manual"]) for b in listing.backups if b not in considered]
    keep.sort(key=lambda item: item[0].started, reverse=True)
    delete = [b for b in considered if b.manifest_key not in reasons]
    stop, fails = _stop_reason(settings, attempt, good, now, len(delete), len(considered), lock_holder)
    return keep, delete, warnings, stop, fails


def delete_backups(storage, backups, folder):
    """Delete manifests first, then the objects of the backups whose manifest is gone.

    Returns (deleted backups, [{key, error}]). Sets .outcome on each deleted backup: DELETED, or
    DELETE_MARKER when a versioned S3 bucket answered with a delete marker for any of its objects
    (its data stays stored as noncurrent versions).
    """
    for backup in backups:  # a last guard: never a key outside this job's folder
        for key in [backup.manifest_key] + [info.key for info in backup.doomed_objects]:
            if not key.startswith(folder):
                raise BackupError("refusing to delete %s: it is outside the job folder %s" % (key, folder))
    markers = getattr(storage, "delete_markers", ())  # S3 only: a local or SFTP remove is final
    markers_before = len(markers)
    failed = dict(storage.delete_many([b.manifest_key for b in backups]))
    gone = [b for b in backups if b.manifest_key not in failed]
    failed.update(storage.delete_many([info.key for b in gone for info in b.doomed_objects]))
    errors = [{"key": key, "error": message} for key, message in sorted(failed.items())]
    marked = set(markers[markers_before:])
    for backup in gone:
        keys = [backup.manifest_key] + [info.key for info in backup.doomed_objects]
        backup.outcome = DELETE_MARKER if any(key in marked for key in keys) else DELETED
    return gone, errors


def _expected_outcome(storage, warnings):
    """What a delete will do here, for a plan: DELETED, or DELETE_MARKER where the bucket keeps versions."""
    versioning = getattr(storage, "versioning", None)  # S3 only
    state = versioning() if versioning is not None else "disabled"
    if state == "unknown":
        warnings.append(
            "the versioning state of %s cannot be read (no s3:GetBucketVersioning, or the service does not offer "
            "it); bytes_freed assumes the bucket keeps no versions: if it does, a real run only adds delete markers "
            "and frees nothing" % storage.location(""))
    return DELETE_MARKER if state in ("enabled", "suspended") else DELETED


def _hidden_warnings(entries, planned=False):
    """The warning (a list of one, or none) for backups a versioned bucket only hides behind delete markers."""
    hidden = [entry for entry in entries if entry["outcome"] == DELETE_MARKER]
    if not hidden:
        return []
    return [
        "the bucket keeps versions: %d backup(s) (%d bytes) %s delete markers and are gone from listings, but "
        "their data stays stored as noncurrent versions (and can be brought back by removing the markers) "
        "until a lifecycle rule expires noncurrent versions, and never before an Object Lock retention ends; "
        "see docs/storage.md, Versioned buckets"
        % (len(hidden), _noncurrent(entries), "would get" if planned else "got")
    ]


def run_prune(params, check_mode=False, diff=False, now=None):
    settings = Settings(params)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    folder = layout.job_folder(settings.prefix, settings.job)
    with opened_storage(params["storage"]) as storage:
        storage.preflight(create=False)
        listing = catalog.list_backups(storage, settings.prefix, settings.job)
        attempt = read_last(storage, settings.prefix, settings.job, settings.keyring)
        lock_holder = holder_of(storage, settings.prefix, settings.job, settings.keyring)
        keep, delete, warnings, stop, fails = decide(settings, storage, listing, attempt, now, lock_holder)
        if lock_holder is not None and lock_holder.get("untrusted"):
            warnings.append("the lock %s was ignored: %s" % (
                storage.location(layout.lock_key(settings.prefix, settings.job)), lock_holder["untrusted"]))
        result = {
            "job": settings.job,
            "location": storage.location(folder),
            "total": len(listing.backups),
            "manual_skipped": sum(1 for _b, r in keep if r == ["manual"]),
            "kept": [_kept_entry(b, r) for b, r in keep],
            "incomplete": listing.incomplete,
            "stopped": stop,
            "errors": [],
        }
        if diff:
            result["diff"] = {
                "before": "".join(b.manifest_key + "\n" for b in listing.backups),
                "after": "".join(b.manifest_key + "\n" for b, _r in keep),
            }
        if listing.incomplete:
            warnings.append(
                "%d object(s) in %s belong to no manifest (left by an interrupted run?); prune leaves them alone"
                % (len(listing.incomplete), result["location"])
            )
        planned = []
        if delete and (check_mode or stop):  # a plan: what the bucket's versioning says a delete would do
            outcome = _expected_outcome(storage, warnings)
            planned = [_deleted_entry(b, outcome) for b in delete]
        if check_mode:
            if stop:
                warnings.append("a real run would stop: " + stop)
            warnings += _hidden_warnings(planned, planned=True)
            result.update(changed=bool(planned), deleted=planned, bytes_freed=_freed(planned),
                          bytes_noncurrent=_noncurrent(planned), warnings=warnings)
            return result
        if stop:
            result.update(changed=False, deleted=[], would_delete=planned, bytes_freed=0, bytes_noncurrent=0)
            if fails:
                raise BackupError(stop, **result)
            result["warnings"] = warnings + [stop]
            return result
        gone, errors = delete_backups(storage, delete, folder)
    deleted = [_deleted_entry(b, b.outcome) for b in gone]
    warnings += _hidden_warnings(deleted)
    result.update(changed=bool(gone), deleted=deleted, bytes_freed=_freed(deleted),
                  bytes_noncurrent=_noncurrent(deleted), errors=errors, warnings=warnings)
    if errors:
        raise BackupError(
            "prune of job %s deleted %d backup(s) but could not delete %d object(s): %s"
            % (settings.job, len(gone), len(errors), "; ".join("%s: %s" % (e["key"], e["error"]) for e in errors[:5])),
            **result
        )
    return result


def _freed(entries):
    return sum(entry["stored_size"] for entry in entries if entry["outcome"] == DELETED)


def _noncurrent(entries):
    return sum(entry["stored_size"] for entry in entries if entry["outcome"] == DELETE_MARKER)
