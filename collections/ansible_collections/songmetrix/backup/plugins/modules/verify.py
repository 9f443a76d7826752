#!/usr/bin/python
# Copyright: songmetrix engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: verify
short_description: Check stored backups against their manifests, byte for byte
version_added: 0.2.0
description:
  - Reads stored artifacts as a stream and compares their size and SHA-256 with the manifest
    (each chunk too, for split artifacts).
  - With O(deep), the same single read also decompresses the stream and checks that it is a
    complete dump of its format, with C(pg_restore) for PostgreSQL custom format, C(tar) for files
    backups and PostgreSQL directory archives (after the end-of-archive blocks only zero padding may
    follow), the closing comment of a plain SQL dump, or the header of a SQLite database.
  - A manifest that points at an object outside its own backup is reported, never followed.
  - Fails the task when any selected backup is missing, damaged or unreadable; the per-backup
    results are returned in both cases.
author:
  - songmetrix engineering (@songmetrix)
extends_documentation_fragment:
  - songmetrix.backup.storage
  - songmetrix.backup.encryption.DECRYPTION
  - songmetrix.backup.signing
options:
  job:
    description: The job whose backups are verified. Required unless O(manifest_key) is given.
    type: str
  manifest_key:
    description: Verify this one backup, given by the storage key of its manifest.
    type: str
  limit:
    description: Verify only this many of the newest backups of O(job); all of them when omitted.
    type: int
  kind:
    description: Verify only C(scheduled) or only C(manual) backups; both when omitted.
    type: str
    choices: [scheduled, manual]
  deep:
    description:
      - Also decompress the stream and check its format (needs the tools named above).
      - C(pg_restore) must be at least as new as the C(pg_dump) that wrote the archive; an older one on
        PATH gives way to the newest client under C(/usr/lib/postgresql/*/bin) or C(/usr/pgsql-*/bin),
        and without one the backup is reported as not checkable, naming the package to install.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads; check mode does the same reads.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in diff_mode).
    support: none
seealso:
  - module: songmetrix.backup.backup_info
"""

EXAMPLES = r"""
- name: Verify the three newest backups of a job, decompressing them too
  songmetrix.backup.verify:
    job: billing-db
    limit: 3
    deep: true
    storage:
      type: s3
      bucket: backups
      prefix: prod

- name: Verify one backup
  songmetrix.backup.verify:
    manifest_key: prod/billing-db/2026/11/23/billing-db-20261123T020000Z.manifest.json
    storage:
      path: /srv/backups
"""

RETURN = r"""
backups:
  description: One result per backup, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    manifest_key:
      description: Key of the backup's manifest.
      type: str
    artifact:
      description: Key of the artifact the manifest names.
      type: str
    ok:
      description: Whether the backup matched its manifest (and, with deep, decompressed as a complete dump).
      type: bool
    problem:
      description: What is wrong, or null.
      type: str
    checked_bytes:
      description: Stored bytes read.
      type: int
    deep:
      description: Whether the deep check ran.
      type: bool
    authentication:
      description:
        - How the manifest's signature checked out. C(status) is C(authenticated) (signed by a key of
          O(signing)), C(unauthenticated) (not signed, or no O(signing) to check it with) or C(invalid)
          (a bad signature, an unknown key, bytes changed, an unreadable manifest); C(key_id) names the key
          it is signed with, C(problem) says what is wrong.
      type: dict
verified:
  description: Number of backups that passed.
  returned: always
  type: int
bad:
  description: Number of backups that did not (missing, damaged, unreadable or with a bad manifest).
  returned: always
  type: int
"""

from ansible_collections.songmetrix.backup.plugins.module_utils.module_base import BackupModule
from ansible_collections.songmetrix.backup.plugins.module_utils.specs import (
    DECRYPTION_OPTIONS,
    signing_specs,
    storage_spec,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.verification import run_verify


def main():
    module = BackupModule(
        argument_spec=dict(
            job=dict(type="str"),
            manifest_key=dict(type="str", no_log=False),
            limit=dict(type="int"),
            kind=dict(type="str", choices=["scheduled", "manual"]),
            deep=dict(type="bool", default=False),
            decryption=dict(type="dict", options=DECRYPTION_OPTIONS),
            storage=storage_spec(),
            **signing_specs()
        ),
        required_one_of=[("job", "manifest_key")],
        mutually_exclusive=[("manifest_key", "job"), ("manifest_key", "limit")],
        supports_check_mode=True,
    )
    module.run(lambda m: run_verify(m.params, check_mode=m.check_mode))


if __name__ == "__main__":
    main()
