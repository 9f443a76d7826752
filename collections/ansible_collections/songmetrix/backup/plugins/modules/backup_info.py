#!/usr/bin/python
# Copyright: songmetrix engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: backup_info
short_description: List the backups of a storage location
version_added: 0.2.0
description:
  - Lists the backups under a storage prefix, for one job or all, newest first.
  - A backup is a manifest that follows the storage layout. Objects without a manifest (an
    interrupted upload, a temporary file, something foreign under a job folder) are never listed
    as backups; they are returned in RV(incomplete).
  - The listing alone gives job, kind, start time and stored size, so large prefixes answer with
    list requests only; O(details) also reads each selected manifest.
author:
  - songmetrix engineering (@songmetrix)
extends_documentation_fragment:
  - songmetrix.backup.storage
  - songmetrix.backup.signing
options:
  job:
    description: Only this job's backups.
    type: str
  kind:
    description: Only C(scheduled) or only C(manual) backups; both when omitted.
    type: str
    choices: [scheduled, manual]
  since:
    description:
      - Only backups started at or after this time, ISO 8601 such as C(2026-11-01) or
        C(2026-11-01T02:00:00Z); without a zone, UTC.
    type: str
  until:
    description: Only backups started at or before this time; a bare date includes the whole day.
    type: str
  latest:
    description: Only the newest backup (the same as O(limit=1)).
    type: bool
    default: false
  limit:
    description: Only this many of the newest backups.
    type: int
  details:
    description: Read the selected backups' manifests and return them.
    type: bool
    default: false
  last_attempt:
    description:
      - Also read the job's last-attempt record (C(<prefix>/<job>/last-attempt.json), written by
        M(songmetrix.backup.dump) at the end of each run) and return it in RV(last_attempt).
      - It is the only trace in storage of a failed run; a run that was killed writes none.
      - Needs O(job).
    type: bool
    default: false
    version_added: 0.5.0
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in diff_mode).
    support: none
seealso:
  - module: songmetrix.backup.verify
"""

EXAMPLES = r"""
- name: Newest backup of a job, with its manifest
  songmetrix.backup.backup_info:
    job: billing-db
    latest: true
    details: true
    storage:
      type: s3
      bucket: backups
      prefix: prod
  register: newest

- name: Every backup of a job, and how its last run went
  songmetrix.backup.backup_info:
    job: billing-db
    last_attempt: true
    storage:
      path: /srv/backups
  register: billing

- name: Fail when the last run failed
  ansible.builtin.assert:
    that: billing.last_attempt is none or billing.last_attempt.status == 'ok'

- name: Fail when the newest backup is older than a day
  ansible.builtin.assert:
    that: newest.latest is not none and
      (now(utc=true) - (newest.latest.started | to_datetime('%Y-%m-%dT%H:%M:%SZ'))).total_seconds() < 86400

- name: Backups of November
  songmetrix.backup.backup_info:
    job: billing-db
    since: '2026-11-01'
    until: '2026-11-30'
    storage:
      path: /srv/backups
"""

RETURN = r"""
backups:
  description: The selected backups, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    manifest_key:
      description: Storage key of the manifest.
      type: str
    job:
      description: Job name.
      type: str
    kind:
      description: scheduled or manual.
      type: str
    started:
      description: UTC start time, ISO 8601.
      type: str
      sample: '2026-11-23T02:00:00Z'
    objects:
      description: Keys of the stored objects of the backup besides the manifest (the artifact, or its chunks).
      type: list
      elements: str
    stored_size:
      description: Bytes stored in those objects.
      type: int
    manifest:
      description: The manifest, with O(details).
      type: dict
      returned: when details is true
    authentication:
      description:
        - Without O(signing) and O(details) the manifest is not read, and this says C(unauthenticated).
        - How the manifest's signature checked out. C(status) is C(authenticated) (signed by a key of
          O(signing)), C(unauthenticated) (not signed, or no O(signing) to check it with) or C(invalid)
          (a bad signature, an unknown key, bytes changed, an unreadable manifest); C(key_id) names the key
          it is signed with, C(problem) says what is wrong.
      type: dict
latest:
  description: The newest selected backup (the first of RV(backups)), or null.
  returned: always
  type: dict
count:
  description: Number of backups returned.
  returned: always
  type: int
total:
  description: Number of backups that matched the filters, before O(limit).
  returned: always
  type: int
stored_bytes:
  description: Bytes stored by the returned backups.
  returned: always
  type: int
incomplete:
  description: Keys under the listed job folders that belong to no manifest (not backups).
  returned: always
  type: list
  elements: str
unauthenticated:
  description:
    - With O(signing), the manifest keys of the returned backups its keys did not sign (also named in a
      warning).
  returned: when O(signing) is given
  type: list
  elements: str
location:
  description: Where the listing looked.
  returned: always
  type: str
last_attempt:
  description:
    - The job's last-attempt record, or null when the job has none (no run recorded an attempt yet).
    - An unreadable record is returned with C(status=unreadable) and the reason in C(error).
  returned: when O(last_attempt) is true
  type: dict
  contains:
    status:
      description:
        - C(ok) or C(failed) (C(unreadable) when the record is not valid JSON).
        - With O(signing), C(unauthenticated) or C(invalid) when the key did not sign the record; what it
          said is in C(claimed_status), why in C(error).
      type: str
    started:
      description: UTC start time of the attempt, ISO 8601.
      type: str
    finished:
      description: UTC end time of the attempt, ISO 8601.
      type: str
    manifest_key:
      description: The manifest the attempt stored (C(ok)), else null.
      type: str
    error:
      description: The failure's message (at most 2,000 characters), else null.
      type: str
    host:
      description: Host name of the machine that ran the attempt.
      type: str
  sample:
    status: failed
    started: '2026-11-23T02:00:00Z'
    finished: '2026-11-23T02:00:04Z'
    manifest_key: null
    error: 'sqlite: /srv/app/app.sqlite3: no such file'
    host: db-backup-01
"""

from ansible_collections.songmetrix.backup.plugins.module_utils.catalog import run_backup_info
from ansible_collections.songmetrix.backup.plugins.module_utils.module_base import BackupModule
from ansible_collections.songmetrix.backup.plugins.module_utils.specs import signing_specs, storage_spec


def main():
    module = BackupModule(
        argument_spec=dict(
            job=dict(type="str"),
            kind=dict(type="str", choices=["scheduled", "manual"]),
            since=dict(type="str"),
            until=dict(type="str"),
            latest=dict(type="bool", default=False),
            limit=dict(type="int"),
            details=dict(type="bool", default=False),
            last_attempt=dict(type="bool", default=False),
            storage=storage_spec(),
            **signing_specs()
        ),
        mutually_exclusive=[("latest", "limit")],
        supports_check_mode=True,
    )
    module.run(lambda m: run_backup_info(m.params, check_mode=m.check_mode))


if __name__ == "__main__":
    main()
