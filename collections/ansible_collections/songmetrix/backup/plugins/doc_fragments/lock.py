class ModuleDocFragment(object):
    # The job locks of dump and upload (module_utils/job_lock.py).
    DOCUMENTATION = r"""
options:
  lock:
    description:
      - Keeps two runs of the same job (same O(job), storage and O(storage.prefix)) from backing up at
        once. A run that finds the job locked fails naming the holder, without a backup, and records
        nothing in the job's last-attempt record (the holder records its own outcome).
      - On one host, a C(flock) on a file in O(lock.dir), released by the kernel when the run ends,
        killed or not. The folder must belong to the user running the module and be writable by nobody
        else, and the lock file is never followed through a symlink, so another local user can neither
        hold the lock nor make the run truncate a file of their choosing.
      - Across hosts that share a storage prefix, the object C(<prefix>/<job>/lock.json) with the
        holder's user, host, pid, start and expiry, created with a write that never replaces an existing
        object (local C(link), S3 C(If-None-Match), SFTP C(rename)), removed when the run ends. A lock
        past its expiry, or left on this host by a run of the same user that is gone, is taken over with a
        warning.
      - M(songmetrix.backup.prune) deletes nothing while a lock that is not stale is held.
    type: dict
    suboptions:
      enabled:
        description:
          - Take the locks. Turn off only where something else already serializes the job's runs.
        type: bool
        default: true
      dir:
        description:
          - Folder of the host lock files. Created 0700 when missing. Refused when it is a symlink,
            belongs to another user, or group or others may write to it; a lock file that is a symlink,
            not a regular file, or not the user's own is refused too (remove it).
          - Default C(/run/songmetrix-backup) for root (the C(RuntimeDirectory=) of the scheduled runs of
            the role C(backup_schedule)), C($XDG_RUNTIME_DIR/songmetrix-backup) for other users; another
            user without C(XDG_RUNTIME_DIR) must set it. There is no fallback into a shared folder such as
            C(/tmp).
          - Each user has its own host locks. A storage lock left on this host by another user's run is
            not taken for a leftover; it keeps the job locked until it is released or stale.
        type: path
      wait:
        description:
          - Seconds to wait for a running backup of the job to finish before failing; V(0) fails at once.
        type: int
        default: 0
      stale_after:
        description:
          - How long after it was taken the storage lock counts as stale, for a run that was killed before
            it could remove it. Seconds, or a number with C(d), C(h), C(m), C(s) (C(90m), C(12h), C(1d)).
            At least one minute.
          - Set it longer than the job's longest backup, or a second host may take the lock over while the
            first still runs (the first then warns about it when it ends).
        type: str
        default: 12h
"""
