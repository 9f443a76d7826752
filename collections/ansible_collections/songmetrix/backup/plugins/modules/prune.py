#!/usr/bin/python
# Copyright: songmetrix engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: prune
short_description: Delete a job's old backups by a GFS retention policy, with safety rails
version_added: 0.3.0
description:
  - Lists the backups (manifests) of one job, decides with O(retention) which to keep, and deletes
    the others. Each manifest goes first, then the objects it names, so an interrupted prune never
    leaves a manifest that points at missing data.
  - "The rules are restic's C(forget) rules, with restic's arithmetic: O(retention.keep_last) keeps the
    newest backups; O(retention.keep_hourly) to O(retention.keep_yearly) keep the newest backup of each
    of the N most recent hours, days, ISO weeks (Monday to Sunday), months or years that have backups,
    counted in O(timezone); a rule that has counts left when it reaches the oldest backup keeps that
    one too (V(-1) always has); O(retention.keep_within) keeps every backup made within a duration
    counted back from the newest backup; O(retention.keep_within_hourly) to
    O(retention.keep_within_yearly) keep the newest backup of each period within such a duration.
    Rules add up: a backup kept by any rule is kept, and each kept backup lists its reasons."
  - Whatever the policy says, the newest good backup (its manifest reads and its artifact is stored
    with the recorded size) and the O(min_keep) newest backups are kept.
  - Nothing is deleted while the job's latest backup attempt has not succeeded (the dump and upload
    modules record each attempt in C(<prefix>/<job>/last-attempt.json)), when no intact backup is
    found, or when the newest good backup is older than O(max_age). The task then succeeds with a
    warning and RV(stopped) says why.
  - A run that would delete more than O(max_delete_fraction) of the job's backups fails and deletes
    nothing unless O(force) is set.
  - Backups dated in the future are kept, left out of the rules and warned about.
  - Only objects under the job's folder that belong to one of its manifests are deleted; other jobs,
    other files and leftovers of interrupted runs are never touched.
  - On S3, deletions go in batches of up to 1000 keys per request, without version ids. A bucket that
    keeps versions (every Object Lock bucket does) then only puts delete markers on the objects and
    frees nothing; RV(deleted) and RV(bytes_noncurrent) say so, with a warning.
author:
  - songmetrix engineering (@songmetrix)
extends_documentation_fragment:
  - songmetrix.backup.storage
  - songmetrix.backup.signing
options:
  job:
    description: The job whose backups are pruned. Backups are grouped by job, never by host or path.
    type: str
    required: true
  retention:
    description:
      - The policy. At least one rule must be set; an empty policy is an error, not "delete everything".
      - Counts are whole numbers; V(-1) means no limit and V(0) (or omitting a rule) turns it off.
    type: dict
    required: true
    suboptions:
      keep_last:
        description: Keep the N newest backups.
        type: int
      keep_hourly:
        description: Keep the newest backup of each of the N most recent hours that have backups.
        type: int
      keep_daily:
        description: Keep the newest backup of each of the N most recent days that have backups.
        type: int
      keep_weekly:
        description: Keep the newest backup of each of the N most recent ISO weeks that have backups.
        type: int
      keep_monthly:
        description: Keep the newest backup of each of the N most recent months that have backups.
        type: int
      keep_yearly:
        description: Keep the newest backup of each of the N most recent years that have backups.
        type: int
      keep_within:
        description:
          - Keep every backup made after the newest backup (not now) minus this duration.
          - "A duration is whole numbers with units V(y) (years), V(m) (months), V(w) (weeks), V(d) (days)
            and V(h) (hours), in any order and each at most once, such as V(36h), V(10d), V(2w), V(6m),
            V(1y6m) or V(1d1m). As in restic, years, months and days go back on the calendar in O(timezone)
            (1 month before 31 March is 3 March: the missing days of February roll forward), hours as
            elapsed time. V(0d) sets no rule."
        type: str
      keep_within_hourly:
        description:
          - Keep the newest backup of each hour that has backups within this duration (see
            O(retention.keep_within)), however many hours that is; the oldest backup too when it is within.
        type: str
      keep_within_daily:
        description: Keep the newest backup of each day within this duration (see O(retention.keep_within_hourly)).
        type: str
      keep_within_weekly:
        description: Keep the newest backup of each ISO week within this duration (see O(retention.keep_within_hourly)).
        type: str
      keep_within_monthly:
        description: Keep the newest backup of each month within this duration (see O(retention.keep_within_hourly)).
        type: str
      keep_within_yearly:
        description: Keep the newest backup of each year within this duration (see O(retention.keep_within_hourly)).
        type: str
  timezone:
    description: IANA time zone in which days, weeks, months and years are counted.
    type: str
    default: UTC
  include_manual:
    description: Also apply the policy to manual backups (C(<job>/manual/...)). They are never pruned otherwise.
    type: bool
    default: false
  min_keep:
    description: Always keep at least this many of the newest backups.
    type: int
    default: 1
  max_age:
    description:
      - Delete nothing when the newest good backup is older than this duration (same syntax as
        O(retention.keep_within)), so that a job whose backups stopped keeps its history.
    type: str
  max_delete_fraction:
    description: The largest share of the job's backups one run may delete without O(force) (0 to 1).
    type: float
    default: 0.5
  force:
    description: Delete even when the run deletes more than O(max_delete_fraction) of the backups.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Check mode is the dry run. It reports exactly what a real run would delete, and warns when a
        real run would stop.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in diff_mode).
    support: full
    details: The manifest keys before and after.
seealso:
  - module: songmetrix.backup.backup_info
  - module: songmetrix.backup.dump
"""

EXAMPLES = r"""
- name: Keep 7 daily, 4 weekly and 12 monthly backups of a job
  songmetrix.backup.prune:
    job: billing-db
    retention:
      keep_daily: 7
      keep_weekly: 4
      keep_monthly: 12
    timezone: Europe/Berlin
    max_age: 2d
    storage:
      type: s3
      bucket: backups
      prefix: prod

- name: See what a new policy would delete, without deleting
  songmetrix.backup.prune:
    job: billing-db
    retention:
      keep_within: 30d
      keep_monthly: -1
    storage:
      path: /srv/backups
  check_mode: true
  register: plan

- name: Every backup of the last 2 days, one a day for 3 months, one a month for 2 years
  songmetrix.backup.prune:
    job: billing-db
    retention:
      keep_within: 2d
      keep_within_daily: 3m
      keep_within_monthly: 2y
    timezone: Europe/Berlin
    storage:
      path: /srv/backups
"""

RETURN = r"""
kept:
  description: The backups that stay, newest first, each with the rules that keep it.
  returned: always
  type: list
  elements: dict
  contains:
    manifest_key:
      description: Storage key of the manifest.
      type: str
    started:
      description: UTC start time, ISO 8601.
      type: str
      sample: '2026-11-23T02:00:00Z'
    kind:
      description: scheduled or manual.
      type: str
    reasons:
      description:
        - Why it is kept, among C(last), C(hourly), C(daily), C(weekly), C(monthly), C(yearly), C(within),
          C(within_hourly), C(within_daily), C(within_weekly), C(within_monthly), C(within_yearly),
          C(<rule> (oldest)), C(future), C(min_keep), C(newest good) and C(manual).
      type: list
      elements: str
      sample: [daily, weekly]
deleted:
  description: The backups deleted (in check mode, those a real run would delete), newest first.
  returned: always
  type: list
  elements: dict
  contains:
    manifest_key:
      description: Storage key of the manifest.
      type: str
    started:
      description: UTC start time, ISO 8601.
      type: str
    kind:
      description: scheduled or manual.
      type: str
    objects:
      description: Keys of the other objects of the backup (the artifact or its chunks, and its attachments).
      type: list
      elements: str
    stored_size:
      description: Bytes of the manifest and those objects.
      type: int
    outcome:
      description:
        - What the storage did. C(deleted) - every object is gone and its bytes are freed.
        - C(delete_marker) - an S3 bucket that keeps versions (versioning enabled or suspended, and every
          Object Lock bucket) answered with a delete marker for the objects. The backup is gone from
          listings (backup_info, restore, verify), but its data stays stored as noncurrent versions until
          a lifecycle rule expires them (never before an Object Lock retention ends); removing the markers
          brings it back. In check mode and RV(would_delete), what the bucket's versioning state predicts.
      type: str
      choices: [deleted, delete_marker]
would_delete:
  description: When a real run stopped, the backups it would have deleted (shaped like RV(deleted)).
  returned: when stopped is set and not in check mode
  type: list
  elements: dict
bytes_freed:
  description:
    - Bytes really freed, those of the RV(deleted) backups whose outcome is C(deleted) (in check mode, that
      would be). 0 on a bucket that keeps versions.
  returned: always
  type: int
bytes_noncurrent:
  description:
    - Bytes of the RV(deleted) backups whose outcome is C(delete_marker) (in check mode, that would be),
      still stored (and billed) as noncurrent versions behind delete markers. Prune does not remove
      versions; a lifecycle rule does (see docs/storage.md, Versioned buckets).
  returned: always
  type: int
total:
  description: Number of backups of the job found, manual ones included.
  returned: always
  type: int
manual_skipped:
  description: Manual backups left out of the policy (O(include_manual) is false).
  returned: always
  type: int
stopped:
  description: Why nothing was (or, in check mode, would be) deleted, or null.
  returned: always
  type: str
incomplete:
  description: Keys in the job folder that belong to no manifest; prune leaves them alone.
  returned: always
  type: list
  elements: str
errors:
  description: Objects that could not be deleted, each with C(key) and C(error). The task fails when there are any.
  returned: always
  type: list
  elements: dict
job:
  description: The job.
  returned: always
  type: str
location:
  description: The job's folder in the storage.
  returned: always
  type: str
"""

from ansible_collections.songmetrix.backup.plugins.module_utils.module_base import BackupModule
from ansible_collections.songmetrix.backup.plugins.module_utils.prune import run_prune
from ansible_collections.songmetrix.backup.plugins.module_utils.specs import retention_spec, signing_specs, storage_spec


def main():
    module = BackupModule(
        argument_spec=dict(
            job=dict(type="str", required=True),
            retention=retention_spec(),
            timezone=dict(type="str", default="UTC"),
            include_manual=dict(type="bool", default=False),
            min_keep=dict(type="int", default=1),
            max_age=dict(type="str"),
            max_delete_fraction=dict(type="float", default=0.5),
            force=dict(type="bool", default=False),
            storage=storage_spec(),
            **signing_specs()
        ),
        supports_check_mode=True,
    )
    module.run(lambda m: run_prune(m.params, check_mode=m.check_mode, diff=m._diff))


if __name__ == "__main__":
    main()
