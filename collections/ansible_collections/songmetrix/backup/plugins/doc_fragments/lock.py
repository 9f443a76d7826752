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
        killed or not.
      - Across hosts that share a storage prefix, the object C(<prefix>/<job>/lock.json) with the
        holder's user, host, pid, start and expiry, created with a write that never replaces an existing
        object (local C(link), S3 C(If-None-Match), SFTP C(rename)), removed when the run ends. A lock
        past its expiry, or left by this host by a run that is gone, is taken over with a warning.
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
          - Directory of the host lock files, writable by every user that runs the job. When the default
            cannot be created, C(songmetrix-backup-locks) in the system temporary directory is used.
        type: path
        default: /run/lock/songmetrix-backup
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
