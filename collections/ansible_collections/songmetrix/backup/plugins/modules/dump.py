#!/usr/bin/python
# Copyright: songmetrix engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: dump
short_description: Stream a database or directory backup to storage, with a manifest
version_added: 0.1.0
description:
  - Runs the engine's dump tool and streams its output through a compressor and a SHA-256 hash
    into storage, with no temporary file of the dump's size (PostgreSQL directory format and SQLite
    aside, see O(spool_dir)).
  - The artifact is written under a temporary name, flushed to disk and then made visible; the
    manifest (JSON) is written after it. A failed run leaves neither.
  - Every stage's exit status counts. A dump tool that dies mid-stream, an error printed by
    C(pg_dump), a C(mysqldump) stream without its C(-- Dump completed) footer, or an empty dump
    fails the task.
  - C(pg_dump) older than the PostgreSQL server is refused with both versions named.
author:
  - songmetrix engineering (@songmetrix)
extends_documentation_fragment:
  - songmetrix.backup.source
  - songmetrix.backup.storage
  - songmetrix.backup.encryption
  - songmetrix.backup.compression
  - songmetrix.backup.lock
  - songmetrix.backup.signing
options:
  job:
    description:
      - Name of the backup job; names the folder and the files of its backups.
      - 1-100 letters, digits, C(.), C(_) or C(-), starting with a letter or digit.
    type: str
    required: true
  kind:
    description:
      - C(scheduled) backups are subject to retention; C(manual) ones are stored under
        C(<job>/manual/) and never pruned unless asked.
    type: str
    default: scheduled
    choices: [scheduled, manual]
  timezone:
    description:
      - IANA timezone of the job, recorded in the manifest; retention periods are computed in it.
    type: str
    default: UTC
  spool_dir:
    description:
      - Directory for the temporary files that cannot be avoided, the SQLite online copy and the
        PostgreSQL directory-format dump; the system temporary directory when omitted.
      - They are named C(.songmetrix-private-<pid>-<kind>-*) after the module process. One that a
        SIGKILLed run left behind is removed by a later run, once its process is gone.
      - When given, it is also the spool. If the storage cannot be reached or fails during the
        upload (after O(storage.retries)), the backup is taken again into
        C(<spool_dir>/songmetrix-spool/<storage id>/), complete with its manifest, and the task
        fails saying so (not for configuration errors such as wrong credentials or a missing
        bucket, which fail at once). The next run of the job with the same O(spool_dir), or
        M(songmetrix.backup.upload) with O(spool_dir), uploads spooled backups first and removes
        each one only after its stored copy was read back and matched its SHA-256.
    type: path
  row_counts:
    description:
      - Record the exact number of rows of every dumped table in the manifest (RV(manifest.table_counts)),
        for restore tests to compare against.
      - Counting reads every table once more (a C(count(*)) each, run beside the dump); turn it off for
        databases where that costs too much. Ignored for O(source.engine=files).
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Validates the options, connects to the source, checks the storage and returns the key
      and manifest the backup would get, without dumping or writing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in diff_mode).
    support: none
notes:
  - The password of a PostgreSQL source is passed in E(PGPASSWORD); for MySQL and MariaDB the
    connection options go through a pipe read as C(--defaults-extra-file=/dev/fd/N).
  - For MongoDB the connection string (credentials included) is written to a mode 0600 YAML file
    in O(spool_dir) (or the system temporary folder) given as C(mongodump --config=FILE), and removed
    when mongodump has exited, also on failure. The archive is stored uncompressed by mongodump (no
    C(--gzip)) and compressed by the pipeline; its header gives RV(manifest.server_version). Check
    mode runs only C(mongodump --version), as mongodump has no connect-only mode.
  - Backup files are created with mode C(0600), directories with C(0750).
seealso:
  - name: Architecture
    description: Pipeline, storage layout and manifest fields.
    link: https://github.com/songmetrix/backup/blob/main/docs/ARCHITECTURE.md
"""

EXAMPLES = r"""
- name: Back up a PostgreSQL database to local storage with zstd
  songmetrix.backup.dump:
    job: billing-db
    source:
      engine: postgresql
      host: db1.example.com
      user: backup
      password: "{{ vault_billing_backup_password }}"
      database: billing
      exclude: [audit.log_*]
    storage:
      type: local
      path: /srv/backups
      prefix: prod

- name: Stream a PostgreSQL dump to MinIO, keeping it in a local spool if the upload fails
  songmetrix.backup.dump:
    job: billing-db
    source:
      engine: postgresql
      host: db1.example.com
      user: backup
      password: "{{ vault_billing_backup_password }}"
      database: billing
    storage:
      type: s3
      endpoint_url: https://minio.internal:9000
      bucket: backups
      prefix: prod
      access_key: "{{ vault_minio_access_key }}"
      secret_key: "{{ vault_minio_secret_key }}"
    spool_dir: /var/spool/songmetrix

- name: Back up a SQL Server database; the .bak is written on the database host, where the module runs
  songmetrix.backup.dump:
    job: erp
    compression: none  # SQL Server compresses the .bak itself
    source:
      engine: mssql
      host: localhost
      user: backup_operator
      password: "{{ vault_mssql_password }}"
      database: ERP
      mssql:
        server_dir: /var/opt/mssql/backup
    storage:
      path: /srv/backups

- name: Back up a SQL Server 2022 database straight to S3-compatible storage, striped over 4 objects
  songmetrix.backup.dump:
    job: erp
    source:
      engine: mssql
      host: sql1.example.com
      user: backup_operator
      password: "{{ vault_mssql_password }}"
      database: ERP
      mssql:
        mode: url
        stripes: 4
    storage:
      type: s3
      endpoint_url: https://minio.internal:9000
      bucket: backups
      access_key: "{{ vault_minio_access_key }}"
      secret_key: "{{ vault_minio_secret_key }}"

- name: Back up a directory to an SFTP server, host key pinned
  songmetrix.backup.dump:
    job: www-uploads
    source:
      engine: files
      path: /var/www/uploads
    storage:
      type: sftp
      host: backup.example.net
      user: backup
      private_key: /etc/songmetrix/backup_ed25519
      host_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExampleEx
      path: /srv/backups

- name: Back up a MariaDB database with gzip level 9, as a manual backup
  songmetrix.backup.dump:
    job: shop-db
    kind: manual
    source:
      engine: mariadb
      host: 127.0.0.1
      user: backup
      password: "{{ vault_shop_backup_password }}"
      database: shop
    storage:
      path: /srv/backups
    compression: gzip
    compression_level: 9

- name: Back up a MongoDB database, one collection left out, read from a secondary
  songmetrix.backup.dump:
    job: catalog-mongo
    source:
      engine: mongodb
      host: mongo1.example.com
      user: backup
      password: "{{ vault_mongo_backup_password }}"
      database: catalog
      exclude: [sessions]
      mongodb:
        auth_database: admin
        read_preference: secondary
    storage:
      path: /srv/backups

- name: Back up a whole MongoDB replica set with its oplog, from a connection string
  songmetrix.backup.dump:
    job: mongo-rs0
    source:
      engine: mongodb
      mongodb:
        uri: "{{ vault_mongo_rs0_uri }}"
        oplog: true
    storage:
      path: /srv/backups

- name: Back up a Supabase project (user schemas and data; roles, managed schemas, auth data as attachments)
  songmetrix.backup.dump:
    job: app-supabase
    source:
      engine: supabase
      supabase:
        # Session pooler (port 5432) or direct connection; sslmode=require is the default
        connection_string: "{{ vault_supabase_db_url }}"
    storage:
      path: /srv/backups

- name: Back up a Supabase project with its Storage buckets to S3, failing when roles cannot be dumped
  songmetrix.backup.dump:
    job: app-supabase
    source:
      engine: supabase
      host: db.abcdefghijklmnopqrst.supabase.co
      user: postgres
      password: "{{ vault_supabase_db_password }}"
      supabase:
        require_attachments: true
        storage_buckets: [avatars, invoices]
        storage_endpoint: https://abcdefghijklmnopqrst.supabase.co/storage/v1/s3
        storage_region: eu-central-1
        storage_access_key: "{{ vault_supabase_s3_access_key }}"
        storage_secret_key: "{{ vault_supabase_s3_secret_key }}"
    storage:
      type: s3
      bucket: backups
      region: eu-central-1

- name: Back up a directory, leaving caches out
  songmetrix.backup.dump:
    job: uploads
    source:
      engine: files
      path: /var/www/uploads
      exclude: ['*.tmp', cache]
    storage:
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
  description: Storage key of the backup artifact, relative to the storage root.
  returned: always
  type: str
  sample: prod/billing-db/2026/11/23/billing-db-20261123T020000Z.dump.zst
manifest_key:
  description: Storage key of the manifest.
  returned: always
  type: str
  sample: prod/billing-db/2026/11/23/billing-db-20261123T020000Z.manifest.json
path:
  description: Where the artifact is, for people; a path, C(s3://bucket/key) or C(sftp://user@host:port/path).
  returned: always
  type: str
  sample: /srv/backups/prod/billing-db/2026/11/23/billing-db-20261123T020000Z.dump.zst
storage:
  description: The storage written to, without credentials.
  returned: always
  type: dict
  sample: {"type": "s3", "bucket": "backups", "endpoint_url": "https://s3.example.com", "region": "eu-central-1"}
spool:
  description:
    - With O(spool_dir), the spooled backups of this job found before the backup; they are uploaded
      (and verified) before the new backup starts. Manifest keys.
  returned: when spool_dir is set
  type: dict
  contains:
    uploaded:
      description: Spooled backups now stored and removed from the spool.
      type: list
      elements: str
    pending:
      description: Spooled backups still in the spool.
      type: list
      elements: str
    failed:
      description: Spooled backups whose upload failed, with the error.
      type: list
      elements: dict
command:
  description: The dump tool's argv (no secrets in it); null for in-process sources (sqlite, files).
  returned: always
  type: list
  elements: str
manifest:
  description:
    - The manifest that was written (in check mode, the preview, without sizes and checksum).
  returned: always
  type: dict
  contains:
    format_version:
      description: Manifest format version.
      type: int
      sample: 1
    job:
      description: Job name.
      type: str
    engine:
      description: Source engine.
      type: str
    database:
      description: Database name, or the path for sqlite and files.
      type: str
    format:
      description: Dump format (custom, plain, directory, sql, sqlite3, tar, archive).
      type: str
    host:
      description: Host that ran the backup.
      type: str
    kind:
      description: scheduled or manual.
      type: str
    timezone:
      description: Job timezone.
      type: str
    started:
      description: UTC start time, ISO 8601.
      type: str
      sample: '2026-11-23T02:00:00Z'
    finished:
      description: UTC end time, ISO 8601.
      type: str
    duration_seconds:
      description: Wall time of the backup.
      type: float
    artifact:
      description: Storage key of the artifact.
      type: str
    raw_size:
      description: Bytes produced by the dump tool.
      type: int
    stored_size:
      description: Bytes stored.
      type: int
    compression:
      description: Algorithm and level.
      type: dict
    encryption:
      description: Encryption details; null when not encrypted.
      type: dict
    sha256:
      description: SHA-256 of the stored bytes.
      type: str
    chunks:
      description: Parts of a split artifact; empty when not split.
      type: list
      elements: dict
    tool_version:
      description: Version of the dump tool.
      type: str
    server_version:
      description: Version of the database server.
      type: str
    table_counts:
      description:
        - Exact rows per dumped table, counted at dump time; null for files and with O(row_counts=false).
        - PostgreSQL, keys C(<schema>.<table>), the tables C(pg_dump) dumps with the include and exclude
          options (asked of C(pg_dump) itself), each table's own rows (C(FROM ONLY)). Counted in the
          dump's own snapshot, exported by a C(REPEATABLE READ) transaction and imported by C(pg_dump)
          (C(--snapshot)), so the counts equal the dumped rows even while others write.
        - MySQL and MariaDB, keys C(<table>), base tables of the database (views aside) as selected
          by the include and exclude options. Counted in a separate
          C(START TRANSACTION WITH CONSISTENT SNAPSHOT) started beside C(mysqldump --single-transaction),
          so exact when nothing writes while the dump starts, otherwise the two snapshots may be a few
          transactions apart; non-transactional tables (MyISAM, Aria) are not consistent with the dump
          under concurrent writes at all.
        - SQLite, keys C(<table>), counted in the copy that was streamed, so exact; virtual tables are
          left out (their shadow tables are counted).
        - MongoDB, keys C(<database>.<collection>), the documents of every collection counted in the
          mongodump archive itself as it streams past (the archive's structure is followed, one size
          field per document), so exact for what was dumped; views and the oplog are left out.
      type: dict
      sample: {"public.items": 3001, "reporting.daily": 32}
"""

from ansible_collections.songmetrix.backup.plugins.module_utils.backup import run_dump
from ansible_collections.songmetrix.backup.plugins.module_utils.module_base import BackupModule
from ansible_collections.songmetrix.backup.plugins.module_utils.specs import (
    compression_specs,
    encryption_specs,
    lock_specs,
    source_spec,
    storage_spec,
    signing_specs,
)


def main():
    argument_spec = dict(
        job=dict(type="str", required=True),
        source=source_spec(),
        storage=storage_spec(),
        kind=dict(type="str", default="scheduled", choices=["scheduled", "manual"]),
        timezone=dict(type="str", default="UTC"),
        spool_dir=dict(type="path"),
        row_counts=dict(type="bool", default=True),
    )
    argument_spec.update(compression_specs())
    argument_spec.update(encryption_specs())
    argument_spec.update(lock_specs())
    argument_spec.update(signing_specs())
    module = BackupModule(argument_spec=argument_spec, supports_check_mode=True)
    module.run(lambda m: run_dump(m.params, check_mode=m.check_mode))


if __name__ == "__main__":
    main()
