"""Where a backup lives in storage: <prefix>/<job>/[manual/]<YYYY>/<MM>/<DD>/<job>-<UTC stamp>.<ext>."""

import datetime
import re

MANIFEST_SUFFIX = ".manifest.json"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def backup_stem(prefix, job, kind, started_utc):
    """The key of a backup without extension; the artifact and its manifest share it."""
    parts = [prefix] if prefix else []
    parts.append(job)
    if kind == "manual":
        parts.append("manual")
    parts.append(started_utc.strftime("%Y/%m/%d"))
    parts.append("%s-%s" % (job, started_utc.strftime(STAMP_FORMAT)))
    return "/".join(parts)


def artifact_key(stem, extension):
    return "%s.%s" % (stem, extension)


def manifest_key(stem):
    return stem + MANIFEST_SUFFIX


def key_in_backup(stem, key):
    """Whether ``key`` is an object of the backup with this stem.

    '<stem>.<name>' beside the manifest (artifact, chunks, attachments), or '<stem>.<name>/<path>'
    in a folder of the backup's own (the Storage objects of a Supabase backup). No part of the
    path may be empty, '.' or '..', or hold control characters: a manifest never points outside
    its own backup.
    """
    if not isinstance(key, str) or not key.startswith(stem + "."):
        return False
    parts = key[len(stem) + 1:].split("/")
    return all(part not in ("", ".", "..") and not any(ord(ch) < 32 or ch == "\x7f" for ch in part)
               for part in parts)


def stem_identity(stem):
    """(job, started as in a manifest) named by a backup stem's last part '<job>-<stamp>', or None."""
    job, _sep, stamp = stem.rsplit("/", 1)[-1].rpartition("-")
    try:
        started = datetime.datetime.strptime(stamp, STAMP_FORMAT)
    except ValueError:
        return None
    return job, iso_utc(started)


def iso_utc(moment):
    """UTC ISO 8601 with a Z, seconds precision: what manifests carry."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_STEM_RE = re.compile(
    r"^(?P<job>[A-Za-z0-9][A-Za-z0-9._-]{0,99})/(?:(?P<manual>manual)/)?"
    r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,99})-(?P<stamp>\d{8}T\d{6}Z)$"
)


def parse_manifest_key(key, prefix=""):
    """{job, kind, started (datetime, UTC), stem} for a manifest key of our layout, else None.

    A key that merely ends in .manifest.json but does not follow the layout (wrong folder, a job
    name that differs between folder and file, a date folder that disagrees with the stamp) is
    not ours, and nothing treats it as a backup.
    """
    if not key.endswith(MANIFEST_SUFFIX):
        return None
    stem = key[: -len(MANIFEST_SUFFIX)]
    if prefix:
        if not stem.startswith(prefix + "/"):
            return None
        rest = stem[len(prefix) + 1:]
    else:
        rest = stem
    match = _STEM_RE.match(rest)
    if not match or match.group("name") != match.group("job"):
        return None
    try:
        started = datetime.datetime.strptime(match.group("stamp"), STAMP_FORMAT)
    except ValueError:
        return None
    if started.strftime("%Y/%m/%d") != "%s/%s/%s" % (match.group("y"), match.group("m"), match.group("d")):
        return None
    return {
        "job": match.group("job"),
        "kind": "manual" if match.group("manual") else "scheduled",
        "started": started.replace(tzinfo=datetime.timezone.utc),
        "stem": stem,
    }


def job_of_manifest_key(key):
    """The job of a manifest key of our layout under any prefix (the prefix is not known), or None."""
    parts = str(key).split("/")
    for start in range(len(parts)):
        found = parse_manifest_key("/".join(parts[start:]))
        if found:
            return found["job"]
    return None


def job_folder(prefix, job=None):
    """The key prefix under which a job's (or, without a job, every job's) backups are listed."""
    parts = [p for p in (prefix, job) if p]
    return "/".join(parts) + "/" if parts else ""


ATTEMPT_NAME = "last-attempt.json"
LOCK_NAME = "lock.json"
STATUS_NAMES = (ATTEMPT_NAME, LOCK_NAME)


def attempt_key(prefix, job):
    """The job's status record: how its latest backup attempt went (see attempts.py)."""
    return job_folder(prefix, job) + ATTEMPT_NAME


def lock_key(prefix, job):
    """The job's lock object, held while a run backs it up (see job_lock.py)."""
    return job_folder(prefix, job) + LOCK_NAME


def is_status_key(key, prefix=""):
    """Whether ``key`` is some job's last-attempt record or lock object under ``prefix``: no backup."""
    rest = key[len(prefix) + 1:] if prefix else key
    if prefix and not key.startswith(prefix + "/"):
        return False
    job, _sep, name = rest.partition("/")
    return name in STATUS_NAMES and bool(job)
