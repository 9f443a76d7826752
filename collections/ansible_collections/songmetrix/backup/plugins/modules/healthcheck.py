#!/usr/bin/python
# Copyright: songmetrix engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: healthcheck
short_description: Check that a backup source and its storage work, and count failures in a row
version_added: 0.5.0
description:
  - 'B(Source): connects with the engine''s own client, exactly as M(songmetrix.backup.dump) does
    (same O(source) dict, same checks), reads the server version, times a trivial query
    (C(SELECT 1); the time includes starting the client) and reads the database size
    (C(pg_database_size); data and index lengths from C(information_schema) for MySQL/MariaDB;
    the file size for SQLite; the apparent size of the files for C(files); the allocated file
    size for SQL Server; not measured for MongoDB).'
  - 'B(Storage): writes a small probe object C(<prefix>/.healthcheck/<host>-<random>), reads it back
    and compares it, then deletes it; each step is reported. Once the write was attempted the
    delete is attempted too, on every failure path. On S3 the exact version written is deleted, so
    a versioned bucket keeps nothing of it; with O(storage.object_lock) or a bucket default
    retention no probe is written (it could not be deleted). Backup objects are never touched.'
  - Also free space (local C(statvfs); SFTP C(statvfs@openssh.com) where the server offers it) and,
    for S3, the bucket's versioning and Object Lock configuration (C(unknown) when access is denied).
  - 'B(Status) per part and overall (the worst): C(healthy), C(warning) (a threshold reached) or
    C(critical) (unreachable, a failed probe step, a critical threshold). A problem of the source
    or storage never fails the task; it is the result, and so is a source or storage option that
    M(songmetrix.backup.dump) would refuse (with its message). Bad O(thresholds), O(alert_after) or
    O(state_dir) fail the task.'
  - 'B(Failures in a row): with O(state_dir), a critical run adds one to the check''s count of
    consecutive failures, a run that is not critical resets it. RV(alert) is true on exactly the
    run that reaches O(alert_after) failures in a row, RV(recovered) on the first run after an
    alert that is not critical.'
author:
  - songmetrix engineering (@songmetrix)
extends_documentation_fragment:
  - songmetrix.backup.source
  - songmetrix.backup.storage
options:
  source:
    description:
      - The source to check, the same dict as M(songmetrix.backup.dump)'s O(songmetrix.backup.dump#module:source).
      - At least one of O(source) and O(storage) is required.
    type: dict
    required: false
  storage:
    description:
      - The storage to check, the same dict as M(songmetrix.backup.dump)'s
        O(songmetrix.backup.dump#module:storage).
    type: dict
    required: false
  name:
    description:
      - Name of the check, the key of its failure count in O(state_dir); use the job's name.
      - Defaults to a name made of the source's engine, host and database and the storage's location.
    type: str
  thresholds:
    description:
      - Limits that make a part C(warning) or C(critical). Sizes are bytes or a number with
        C(K), C(M), C(G) or C(T) (binary units), such as C(20G).
    type: dict
    default: {}
    suboptions:
      latency_warning_ms:
        description: Latency of the trivial query, in milliseconds, from which the source is C(warning).
        type: float
        default: 1000
      latency_critical_ms:
        description: Latency from which the source is C(critical).
        type: float
        default: 10000
      size_warning:
        description: Database size from which the source is C(warning).
        type: str
      size_critical:
        description: Database size from which the source is C(critical).
        type: str
      free_warning:
        description: Free space of a local or SFTP storage at or below which it is C(warning).
        type: str
      free_critical:
        description: Free space at or below which the storage is C(critical).
        type: str
  state_dir:
    description:
      - Folder on the host that keeps the count of consecutive failures, one file
        C(healthcheck-<name>.json) per check (mode 0600, folder 0700, written atomically).
      - The file is rewritten only when the count changes. Without it, every critical run alerts.
    type: path
  alert_after:
    description:
      - RV(alert) is true on the run that reaches this many critical runs in a row (and not on
        the runs after it, until a recovery). More than 1 needs O(state_dir).
    type: int
    default: 1
  spool_dir:
    description: Folder for the short-lived 0600 files some clients need (MongoDB's C(--config) file).
    type: path
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Connects and reads only; writes no probe object and no state file. The result shows what
      the state would become, and C(changed) whether the state file would be rewritten.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in diff_mode).
    support: none
notes:
  - C(changed) is true only when the state file was rewritten (a failure, or the first success
    after failures). Writing and deleting the probe object is not a change.
seealso:
  - module: songmetrix.backup.dump
"""

EXAMPLES = r"""
- name: Check a PostgreSQL source and its S3 storage; alert after 3 failed runs in a row
  songmetrix.backup.healthcheck:
    name: billing-db
    source:
      engine: postgresql
      host: db1.internal
      user: backup
      password: "{{ vault_billing_password }}"
      database: billing
    storage:
      type: s3
      bucket: backups
      prefix: prod
    thresholds:
      latency_warning_ms: 200
      size_warning: 200G
    state_dir: /var/lib/songmetrix-backup/health
    alert_after: 3
  register: health

- name: Only the storage
  songmetrix.backup.healthcheck:
    storage:
      path: /srv/backups
    thresholds:
      free_warning: 50G
      free_critical: 5G
"""

RETURN = r"""
name:
  description: Name of the check.
  returned: always
  type: str
status:
  description: The worst status of the parts checked.
  returned: always
  type: str
  sample: healthy
msg:
  description: C(healthy), or what is wrong with which part.
  returned: always
  type: str
source:
  description: The source check; null without O(source).
  returned: always
  type: dict
  contains:
    status:
      description: C(healthy), C(warning) or C(critical).
      type: str
    reachable:
      description: Whether the client connected (or the file or folder could be read).
      type: bool
    engine:
      description: The source's engine.
      type: str
    server_version:
      description: Version the server reports (SQLite, the library's); null for C(files) or when unknown.
      type: str
    tool_version:
      description: Version of the dump tool that M(songmetrix.backup.dump) would run.
      type: str
    latency_ms:
      description: Milliseconds of a trivial query, starting the client included.
      type: float
    database_size:
      description: Size of the database in bytes; null where not measured (see notes).
      type: int
    msg:
      description: What is wrong, or a short summary.
      type: str
    notes:
      description: How a value was measured, or why it is missing.
      type: list
      elements: str
storage:
  description: The storage check; null without O(storage).
  returned: always
  type: dict
  contains:
    status:
      description: C(healthy), C(warning) or C(critical).
      type: str
    type:
      description: C(local), C(s3) or C(sftp).
      type: str
    location:
      description: Where the storage (with its prefix) is, without credentials.
      type: str
    reachable:
      description: Whether the storage answered (connected, logged in, bucket found).
      type: bool
    write_ok:
      description: Whether the probe was written; null when it was not tried (check mode, Object Lock).
      type: bool
    read_ok:
      description: Whether the probe read back equal to what was written; null when not tried.
      type: bool
    delete_ok:
      description: Whether the probe was deleted; null when nothing was written.
      type: bool
    failed_step:
      description: C(connect), C(free space), C(bucket settings), C(write), C(read) or C(delete); null when none failed.
      type: str
    probe_key:
      description: The probe's key; null when none was written.
      type: str
    free_bytes:
      description: Free space for this user, in bytes (local, SFTP); null where unknown or for S3.
      type: int
    total_bytes:
      description: Size of the file system, in bytes (local, SFTP).
      type: int
    versioning:
      description: S3 bucket versioning, C(enabled), C(suspended), C(disabled) or C(unknown); null for other types.
      type: str
    object_lock:
      description: S3 Object Lock, C(enabled), C(disabled) or C(unknown); null for other types.
      type: str
    object_lock_default:
      description: The bucket's default retention (mode, days or years), when it has one.
      type: dict
      returned: when set on the bucket
    msg:
      description: What is wrong, naming the step, or a short summary.
      type: str
    notes:
      description: Values not measured and why, steps skipped.
      type: list
      elements: str
consecutive_failures:
  description: Critical runs in a row, this one included (what it would be, in check mode).
  returned: always
  type: int
alert:
  description: True on the run that reached O(alert_after) critical runs in a row.
  returned: always
  type: bool
recovered:
  description: True on the first run that is not critical after an alert.
  returned: always
  type: bool
state_file:
  description: The state file of this check; null without O(state_dir).
  returned: always
  type: str
state_changed:
  description: Whether the state file was (check mode, would be) rewritten; the same as C(changed).
  returned: always
  type: bool
check_mode:
  description: Whether the run was in check mode (no probe, no state written).
  returned: always
  type: bool
"""

from ansible_collections.songmetrix.backup.plugins.module_utils.health_check import run_healthcheck
from ansible_collections.songmetrix.backup.plugins.module_utils.module_base import BackupModule
from ansible_collections.songmetrix.backup.plugins.module_utils.specs import (
    SOURCE_OPTIONS,
    STORAGE_OPTIONS,
    STORAGE_REQUIRED_IF,
)

THRESHOLD_OPTIONS = dict(
    latency_warning_ms=dict(type="float", default=1000),
    latency_critical_ms=dict(type="float", default=10000),
    size_warning=dict(type="str"),
    size_critical=dict(type="str"),
    free_warning=dict(type="str"),
    free_critical=dict(type="str"),
)


def main():
    module = BackupModule(
        argument_spec=dict(
            source=dict(type="dict", options=SOURCE_OPTIONS),
            storage=dict(type="dict", options=STORAGE_OPTIONS, required_if=STORAGE_REQUIRED_IF),
            name=dict(type="str"),
            thresholds=dict(type="dict", default={}, options=THRESHOLD_OPTIONS),
            state_dir=dict(type="path"),
            alert_after=dict(type="int", default=1),
            spool_dir=dict(type="path"),
        ),
        required_one_of=[("source", "storage")],
        supports_check_mode=True,
    )
    module.run(lambda m: run_healthcheck(m.params, m.check_mode, m.scrub))


if __name__ == "__main__":
    main()
