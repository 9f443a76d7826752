"""Locks that keep two runs of one job from backing up at the same time.

- HostLock: flock() on a file of this host in a private folder (``lock.dir``; default
  /run/songmetrix-backup for root, $XDG_RUNTIME_DIR/songmetrix-backup for other users): owned by
  the user, writable by nobody else, the file opened with O_NOFOLLOW (host_dirs.py), so another
  local user can neither hold the lock nor turn it into a symlink that the run would truncate.
  Two runs of a job on one host: the second waits up to ``lock.wait`` seconds, then fails naming
  the first. The kernel releases the lock when its process ends, killed or not.
- StorageLock: ``<prefix>/<job>/lock.json`` in the storage, for hosts that share a storage
  prefix. It is created with the storage's write that never replaces an existing object (local
  link(), S3 If-None-Match: *, SFTP rename), and holds owner, host, pid, acquired and expires.
  A lock past its ``expires`` (``lock.stale_after`` after it was taken) is stale: the next run
  takes it over, with a warning. So is a lock left by this host and user: whoever holds the host
  lock knows that no other run of the job by this user on this host is alive.

prune reads the storage lock (holder_of) and deletes nothing while a live one is held.

A job with a signing key signs its lock object (signing.py). Read with the key, a lock object the
key did not sign holds nothing (anyone who can write to the storage could plant one to stop the
job's backups and prunes): a run takes it over with a warning, prune ignores it with one.
"""

import datetime
import errno
import fcntl
import getpass
import hashlib
import json
import os
import re
import socket
import time
import uuid

from ansible_collections.songmetrix.backup.plugins.module_utils import layout
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.host_dirs import open_private_dir, open_private_file
from ansible_collections.songmetrix.backup.plugins.module_utils.signing import Keyring
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import identity

FORMAT_VERSION = 1
SIGNED_KIND = "lock"  # what the signature says this record is
# root's lock folder: also the RuntimeDirectory= of the scheduled runs (roles/backup_schedule).
DEFAULT_DIR = "/run/songmetrix-backup"
DEFAULT_STALE_AFTER = "12h"
POLL_SECONDS = 0.5
_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class LockHeld(BackupError):
    """Another run holds the job's lock; ``holder`` says who (details: locked)."""

    def __init__(self, message, holder):
        super(LockHeld, self).__init__(message, locked=holder)
        self.holder = holder


def parse_stale_after(text):
    """Seconds of a duration such as 3600, '90m', '12h', '1d6h'; at least one minute."""
    text = str(text if text is not None else DEFAULT_STALE_AFTER).strip()
    if text.isdigit():
        seconds = int(text)
    else:
        match = _DURATION_RE.match(text)
        if not text or not match or not any(match.groups()):
            raise ValidationError(
                "lock.stale_after %r is not a duration: use seconds or a number with d, h, m or s, such as 12h or 90m"
                % (text,))
        days, hours, minutes, secs = (int(part or 0) for part in match.groups())
        seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    if seconds < 60:
        raise ValidationError("lock.stale_after must be at least one minute, not %r" % (text,))
    return seconds


def describe_holder(holder):
    text = "%s of job %s on host %s (pid %s, user %s) since %s" % (
        holder.get("operation") or "a run", holder.get("job"), holder.get("host"), holder.get("pid"),
        holder.get("owner"), holder.get("acquired"))
    return text + (", stale after %s" % holder["expires"] if holder.get("expires") else "")


def _parse_time(text):
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def is_stale(holder, now):
    """A lock whose expiry has passed, that cannot be read or that the job's key did not sign holds nothing."""
    if holder.get("untrusted"):
        return True
    expires = _parse_time(holder.get("expires"))
    return expires is None or expires <= now


def _encode(record):
    return (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")


def holder_of(storage, prefix, job, keyring=None):
    """The job's storage lock as a dict, or None when there is none.

    With a signing key, a lock the key did not sign comes back with ``untrusted`` (why), which
    makes it stale.
    """
    key = layout.lock_key(prefix, job)
    if not storage.exists(key):
        return None
    try:
        holder, verdict = (keyring or Keyring(None)).check(SIGNED_KIND, storage.get_small(key), _encode,
                                                           "the lock %s" % storage.location(key))
    except BackupError:
        if not storage.exists(key):
            return None  # released between the two calls
        raise
    except ValueError:
        return {"job": job, "expires": None, "unreadable": True}
    if keyring is not None and keyring.enabled and not verdict.ok:
        holder["untrusted"] = verdict.problem
    return holder


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def default_lock_dir():
    """The lock folder when ``lock.dir`` is not set: root's /run/songmetrix-backup, else the user's
    own runtime folder. Never a shared folder such as /tmp or /run/lock: another user could hold
    or replace the lock there."""
    if os.geteuid() == 0:
        return DEFAULT_DIR
    runtime = os.environ.get("XDG_RUNTIME_DIR") or ""
    if os.path.isabs(runtime):
        return os.path.join(runtime, "songmetrix-backup")
    raise ValidationError(
        "lock.dir is not set and this user (uid %d) has no private runtime folder ($XDG_RUNTIME_DIR is not "
        "set): set lock.dir to a folder that only this user can write, such as ~/.local/state/songmetrix-backup"
        % os.geteuid())


class HostLock(object):
    """flock() on <dir>/<job>-<storage id>.lock; the file names the holder for the message."""

    def __init__(self, directory, storage, prefix, job):
        self.directory = directory or default_lock_dir()
        scope = hashlib.sha256(("%s\n%s" % (identity(storage), prefix)).encode("utf-8")).hexdigest()[:12]
        self.name = "%s-%s.lock" % (job, scope)
        self.path = os.path.join(self.directory, self.name)
        self.job = job
        self._fd = None

    def _open(self):
        """The lock file, opened relative to the checked folder: no symlink is ever followed."""
        dir_fd = open_private_dir(self.directory, "lock.dir")
        try:
            return open_private_file(dir_fd, self.name, "the lock file %s" % self.path)
        finally:
            os.close(dir_fd)

    def acquire(self, wait):
        fd = self._open()
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise BackupError("cannot lock %s: %s" % (self.path, exc.strerror))
                if time.monotonic() >= deadline:
                    holder = self._holder(fd)
                    os.close(fd)
                    raise LockHeld(
                        "job %s is already running on this host (%s%s); this run stopped without a backup "
                        "(lock %s)" % (self.job, describe_holder(holder) if holder else "the lock is held",
                                       ", waited %ds" % wait if wait else "", self.path), holder or {})
                time.sleep(POLL_SECONDS)
        self._fd = fd
        record = {"job": self.job, "operation": "backup", "host": socket.gethostname(), "pid": os.getpid(),
                  "owner": _user(), "acquired": layout.iso_utc(_utc_now()), "expires": None}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"), 0)

    @staticmethod
    def _holder(fd):
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "null")
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def release(self):
        if self._fd is not None:
            # Empty the file first: a later reader must not take a finished run for the holder.
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _user():
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry for the uid (a container)
        return str(os.getuid())


class StorageLock(object):
    """The job's lock object in the storage, for runs on different hosts sharing the prefix."""

    def __init__(self, storage, prefix, job, stale_after_seconds, operation="backup", keyring=None):
        self.storage = storage
        self.keyring = keyring or Keyring(None)
        self.prefix = prefix
        self.job = job
        self.key = layout.lock_key(prefix, job)
        self.stale_after = stale_after_seconds
        self.operation = operation
        self.token = uuid.uuid4().hex
        self.held = False
        self.warnings = []

    def _record(self, now):
        return {
            "format_version": FORMAT_VERSION, "job": self.job, "operation": self.operation, "owner": _user(),
            "host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
            "acquired": layout.iso_utc(now),
            "expires": layout.iso_utc(now + datetime.timedelta(seconds=self.stale_after)),
        }

    def acquire(self, wait, host_locked):
        """Take the lock, waiting up to ``wait`` seconds for a live holder; raises LockHeld.

        ``host_locked``: this run holds the job's host lock, so a lock left by this host and user is stale.
        """
        deadline = time.monotonic() + wait
        taken_over = None
        vanished = 0
        while True:
            now = _utc_now()
            data = self.keyring.encode(SIGNED_KIND, self._record(now), _encode)
            try:
                self.storage.create_small(self.key, data)
            except BackupError:
                holder = holder_of(self.storage, self.prefix, self.job, self.keyring)
                if holder is None:
                    vanished += 1
                    if vanished > 3:
                        raise  # no lock is there, so the write failed for another reason
                    continue  # released in between: try again at once
                if holder.get("token") == self.token and not holder.get("untrusted"):
                    break  # our own write went through before the error (a retried request)
                # Host locks are per user (each user's own lock.dir): only this user's leftovers are known dead.
                left_here = (host_locked and holder.get("host") == socket.gethostname()
                             and holder.get("owner") == _user())
                if is_stale(holder, now) or left_here:
                    if holder == taken_over:
                        raise  # deleted it once already and it is back: not ours to fight over
                    taken_over = holder
                    self.warnings.append("took over the lock %s: %s (%s)" % (
                        self.storage.location(self.key), describe_holder(holder),
                        holder.get("untrusted") or (
                            "left by this host, whose run of the job is gone" if left_here and not is_stale(holder, now)
                            else "stale")))
                    self.storage.delete(self.key)
                    continue
                if time.monotonic() >= deadline:
                    raise LockHeld(
                        "job %s is locked by another run sharing its storage: %s; this run stopped without a "
                        "backup (lock %s; a lock left by a killed run is taken over after it is stale)"
                        % (self.job, describe_holder(holder), self.storage.location(self.key)), holder)
                time.sleep(POLL_SECONDS)
                continue
            break
        # A storage that ignores If-None-Match lets the last writer win: read back who that was.
        holder = holder_of(self.storage, self.prefix, self.job, self.keyring)
        if not holder or holder.get("token") != self.token or holder.get("untrusted"):
            raise LockHeld("job %s was locked by another run at the same moment: %s" % (
                self.job, describe_holder(holder or {})), holder or {})
        self.held = True

    def release(self):
        """Remove the lock if it is still ours (best effort: a leftover lock goes stale)."""
        if not self.held:
            return
        self.held = False
        try:
            holder = holder_of(self.storage, self.prefix, self.job, self.keyring)
            if holder and holder.get("token") == self.token and not holder.get("untrusted"):
                failed = self.storage.delete_many([self.key])  # and the folders it emptied (local, SFTP)
                if failed:
                    raise BackupError(failed[0][1])
            else:
                self.warnings.append(
                    "the lock %s was taken over by %s while this run held it: set lock.stale_after longer than "
                    "the job's longest run" % (self.storage.location(self.key), describe_holder(holder or {})))
        except BackupError as exc:
            self.warnings.append("could not remove the lock %s: %s" % (self.storage.location(self.key), exc))


class LockSettings(object):
    """The ``lock`` option of dump and upload, validated before anything runs."""

    def __init__(self, params):
        params = params or {}
        self.enabled = params.get("enabled") is not False
        self.directory = params.get("dir") or (default_lock_dir() if self.enabled else None)
        if self.directory and not os.path.isabs(self.directory):
            raise ValidationError("lock.dir must be an absolute path, not %r" % (self.directory,))
        self.wait = params.get("wait") or 0
        if not 0 <= self.wait <= 86400:
            raise ValidationError("lock.wait must be between 0 and 86400 seconds, not %s" % self.wait)
        self.stale_after = parse_stale_after(params.get("stale_after"))


class JobLocks(object):
    """Both locks of one run of one job: the host lock first, then (storage reachable) the storage lock."""

    def __init__(self, settings, storage, prefix, job, keyring=None):
        self.settings = settings
        self.host = HostLock(settings.directory, storage, prefix, job) if settings.enabled else None
        self.storage = (StorageLock(storage, prefix, job, settings.stale_after, keyring=keyring)
                        if settings.enabled else None)
        self.host_held = False
        self.warnings = []

    def take_host_lock(self, check_mode):
        """Check mode only tells whether a real run would find the job running."""
        if self.host is None:
            return
        try:
            self.host.acquire(0 if check_mode else self.settings.wait)
        except LockHeld as exc:
            if not check_mode:
                raise
            self.warnings.append("a real run would stop now: %s" % exc)
            return
        if check_mode:
            self.host.release()
        else:
            self.host_held = True

    def take_storage_lock(self, check_mode):
        if self.storage is None:
            return
        if check_mode:
            holder = holder_of(self.storage.storage, self.storage.prefix, self.storage.job, self.storage.keyring)
            if holder and not is_stale(holder, _utc_now()):
                self.warnings.append("the job is locked now: %s" % describe_holder(holder))
            return
        self.storage.acquire(self.settings.wait, host_locked=self.host_held)

    def release(self):
        """Storage lock first: once the host lock is free, another run of this host may take both."""
        if self.storage is not None:
            self.storage.release()
            self.warnings.extend(self.storage.warnings)
            self.storage.warnings = []
        if self.host is not None:
            self.host.release()
            self.host_held = False
