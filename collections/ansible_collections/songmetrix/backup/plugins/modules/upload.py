#!/usr/bin/python
# Copyright: songmetrix engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: upload
short_description: Store an existing local file as a backup, with a manifest; or upload what the spool holds
version_added: 0.2.0
description:
  - Streams a file that already exists on the host, such as a SQL Server C(.bak) written by
    C(BACKUP DATABASE) or an export made by another tool, through the same compression, SHA-256
    and storage as M(songmetrix.backup.dump), and writes its manifest last.
  - The file must not change while it is read; if its size or modification time changes, the
    upload fails and nothing is stored.
  - Without O(src), uploads the backups kept in the spool of O(spool_dir) for this storage (one
    job with O(job), else all), each removed from the spool only after its stored copy was read
    back and matched its SHA-256.
author:
  - songmetrix engineering (@songmetrix)
extends_documentation_fragment:
  - songmetrix.backup.storage
  - songmetrix.backup.encryption
  - songmetrix.backup.compression
  - songmetrix.backup.lock
  - songmetrix.backup.signing
options:
  job:
    description:
      - Name of the backup job; names the folder and the files of its backups. Required with O(src).
      - 1-100 letters, digits, C(.), C(_) or C(-), starting with a letter or digit.
    type: str
  src:
    description: Absolute path of the file to store.
    type: path
  engine:
    description: What made the file, recorded in the manifest (such as C(mssql)).
    type: str
    default: file
  database:
    description: Database the file is a backup of, recorded in the manifest; the file name when omitted.
    type: str
  remove_src:
    description: Remove O(src) after the artifact and its manifest are stored.
    type: bool
    default: false
  kind:
    description:
      - C(scheduled) backups are subject to retention; C(manual) ones are stored under
        C(<job>/manual/) and never pruned unless asked.
    type: str
    default: scheduled
    choices: [scheduled, manual]
  timezone:
    description: IANA timezone of the job, recorded in the manifest.
    type: str
    default: UTC
  spool_dir:
    description:
      - The spool directory (see M(songmetrix.backup.dump)). With O(src), a failed upload keeps the
        backup there; without O(src), what is spooled is uploaded.
    type: path
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Checks the file and the storage and returns the keys the backup would get, or the spooled
      backups that would be uploaded.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in diff_mode).
    support: none
seealso:
  - module: songmetrix.backup.dump
  - module: songmetrix.backup.verify
"""

EXAMPLES = r"""
- name: Store a SQL Server backup file in S3 and remove it from the server's backup folder
  songmetrix.backup.upload:
    job: erp-mssql
    src: /var/opt/mssql/backup/erp.bak
    engine: mssql
    database: erp
    compression: none
    remove_src: true
    storage:
      type: s3
      bucket: backups
      access_key: "{{ vault_s3_access_key }}"
      secret_key: "{{ vault_s3_secret_key }}"

- name: Upload every backup the spool holds for this storage
  songmetrix.backup.upload:
    spool_dir: /var/spool/songmetrix
    storage:
      type: sftp
      host: backup.example.net
      user: backup
      private_key: /etc/songmetrix/backup_ed25519
      path: /srv/backups
"""

RETURN = r"""
locked:
  description:
    - When the run stopped because another run of the job holds its lock (O(lock)), that run's lock
      record; the task failed and no backup was made.
  returned: when the job was locked
  type: dict
  contains:
    host:
      description: Host of the run that holds the lock.
      type: str
    pid:
      description: Its process ID.
      type: int
    owner:
      description: The user it runs as.
      type: str
    acquired:
      description: When it took the lock (UTC).
      type: str
    expires:
      description: When the storage lock counts as stale (UTC); null for the host lock.
      type: str
  sample: {"host": "db2", "pid": 4242, "owner": "backup", "acquired": "2026-12-05T02:00:03Z",
           "expires": "2026-12-05T14:00:03Z", "operation": "backup", "job": "billing-db"}
artifact:
  description: Storage key of the artifact.
  returned: when src is given
  type: str
  sample: prod/erp-mssql/2026/11/23/erp-mssql-20261123T020000Z.bak
manifest_key:
  description: Storage key of the manifest.
  returned: when src is given
  type: str
path:
  description: Where the artifact is, for people (a path, s3:// or sftp:// URL).
  returned: when src is given
  type: str
manifest:
  description: The manifest written; the same fields as the manifest returned by M(songmetrix.backup.dump).
  returned: when src is given
  type: dict
storage:
  description: The storage written to, without credentials.
  returned: always
  type: dict
src_removed:
  description: Whether O(src) was removed after the upload.
  returned: when remove_src is true and the file was removed
  type: bool
spool:
  description: Spooled backups (manifest keys) that were uploaded, are still pending, or failed with their error.
  returned: when spool_dir is set
  type: dict
"""

from ansible_collections.songmetrix.backup.plugins.module_utils.backup import run_upload
from ansible_collections.songmetrix.backup.plugins.module_utils.module_base import BackupModule
from ansible_collections.songmetrix.backup.plugins.module_utils.specs import (
    compression_specs,
    encryption_specs,
    lock_specs,
    storage_spec,
    signing_specs,
)


def main():
    argument_spec = dict(
        job=dict(type="str"),
        src=dict(type="path"),
        engine=dict(type="str", default="file"),
        database=dict(type="str"),
        remove_src=dict(type="bool", default=False),
        storage=storage_spec(),
        kind=dict(type="str", default="scheduled", choices=["scheduled", "manual"]),
        timezone=dict(type="str", default="UTC"),
        spool_dir=dict(type="path"),
    )
    argument_spec.update(compression_specs())
    argument_spec.update(encryption_specs())
    argument_spec.update(lock_specs())
    argument_spec.update(signing_specs())
    module = BackupModule(
        argument_spec=argument_spec,
        required_one_of=[("src", "spool_dir")],
        required_by={"src": "job"},
        supports_check_mode=True,
    )
    module.run(lambda m: run_upload(m.params, check_mode=m.check_mode))


if __name__ == "__main__":
    main()
