#!/usr/bin/python
# Copyright: songmetrix engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: restore
short_description: Restore a stored backup into a database, a SQLite file or a folder
version_added: 0.3.0
description:
  - Picks one backup (by O(manifest_key), the newest of O(job) with O(latest), or the newest of
    O(job) started at or before O(before)), streams it from storage, checks its size and SHA-256
    against the manifest while reading, decompresses it and loads it into O(target).
  - Everything is checked before anything is written, in this order, the options, the manifest,
    the target's engine against the backup's (a C(postgresql) backup into a C(postgresql) target,
    C(mysql)/C(mariadb) into C(mysql)/C(mariadb), C(sqlite) into C(sqlite), C(files) into C(files),
    C(mongodb) into C(mongodb), C(mssql) into C(mssql)),
    and the target (connection, existence, emptiness).
  - PostgreSQL custom format is loaded with C(pg_restore) reading the stream; plain format with
    C(psql); directory format (stored as a tar) is extracted into a temporary folder under
    O(spool_dir) and loaded with C(pg_restore), in parallel with O(jobs).
  - What a backup holds is not trusted, whatever its manifest says (a manifest may pick the plain
    format for a job that never used it). SQL is loaded by C(psql) in restricted mode
    (C(\restrict) with a random key as its first input line), so psql refuses every
    meta-command of the backup (C(\!), C(\o |cmd), C(\copy ... program), C(\i), C(\gexec), ...);
    the restore fails with an error naming it and nothing of it runs. pg_dump's own
    C(\restrict)/C(\unrestrict) pair (pg_dump 13.22, 14.19, 15.14, 16.10, 17.6 and later write
    one) is dropped from the stream. This needs psql 13.22, 14.19, 15.14, 16.10, 17.6, 18 or later;
    when the C(psql) found is older, the newest client under C(/usr/lib/postgresql/*/bin) or
    C(/usr/pgsql-*/bin) that has it is used, else the task fails before the target is touched,
    naming the releases to install. The same applies to the Supabase attachments (O(target.supabase)).
  - MySQL/MariaDB backups are loaded with the C(mysql)/C(mariadb) client with C(--binary-mode)
    (no client command of the backup, such as C(\!) or C(system), is run; a client without the
    option is refused), C(--sandbox) where the MariaDB client has it, C(--commands=OFF) where
    the MySQL client has it, and C(--local-infile=0) (a C(LOAD DATA LOCAL INFILE) of the backup
    cannot read files of this host).
  - The SQL itself runs with the privileges of O(target.user); server-side statements such as
    C(COPY ... TO PROGRAM) (PostgreSQL superusers) or C(SELECT ... INTO OUTFILE) (MySQL C(FILE)
    privilege) run on the database server. Restore backups you cannot authenticate with a user
    that lacks those privileges.
  - MongoDB backups (mongodump archives) are loaded with C(mongorestore --archive) reading the
    stream; the connection string goes in a mode 0600 C(--config) file removed after the run. A
    database backup is restored with C(--nsInclude=<db>.*) (and C(--nsFrom)/C(--nsTo) when
    O(target.database) names another database). A target database is checked for emptiness by
    reading its collection list from the prelude of a C(mongodump --db=<target> --archive) that is
    stopped right after it (mongodump must be installed beside mongorestore); O(clean) or O(force)
    skip that check. A summary naming documents that failed to restore fails the task, although
    mongorestore exits 0 then. O(scratch) restore tests are not available for MongoDB.
  - SQL Server backups (C(mssql)) are restored with C(RESTORE DATABASE) through C(sqlcmd). In C(native)
    mode the stored C(.bak) is written, decompressed and checked against its SHA-256, to a temporary
    file in O(target.mssql.local_dir) that SQL Server reads as O(target.mssql.server_dir), and removed
    afterwards; in C(url) mode SQL Server reads the backup's object(s) from the S3 storage itself
    (C(RESTORE ... FROM URL), SQL Server 2022 and later). See O(target.mssql).
  - A SQLite backup is written to a temporary file beside O(target.path), synced and checked
    (header, C(PRAGMA quick_check), SHA-256), then renamed into place.
  - A files backup is extracted into a temporary folder beside O(target.path) and moved into place
    only when complete. The extraction is confined to that folder. Every file-system call is made
    relative to a folder reached without following links (C(openat2) with C(RESOLVE_BENEATH) where
    the kernel has it, else one C(O_NOFOLLOW) component at a time), so no member is written
    through a symbolic link and a hard link's source must be a regular file restored before it,
    reached without links. Absolute member names and C(..) components are refused; a symbolic
    link must be relative, with C(..) components only at its start and no more of them than its
    depth, so that it resolves inside the tree whatever later members add (each link is also
    resolved beneath the folder by the kernel after the extraction). A refused member fails the
    restore and O(target.path) is left as it was.
  - File modes and times are restored; owners per O(preserve_owner). Setuid and setgid bits are kept
    only with owners and only from a backup signed by O(signing)'s key; otherwise they are dropped.
    Either way a warning names the entries. Device files are skipped with a warning.
  - A PostgreSQL directory-format archive may hold only regular files and folders; a symbolic or
    hard link, FIFO or device in it is refused, as a data file that is a link would make
    C(pg_restore) read any file of this host.
  - A size or SHA-256 mismatch always fails the task.
  - Secrets are passed to the client tools through the environment (PostgreSQL; C(SQLCMDPASSWORD) for
    SQL Server) or an inherited pipe read as an option file (MySQL/MariaDB), never on the command line.
  - Encrypted backups (see M(songmetrix.backup.dump)'s O(songmetrix.backup.dump#module:encryption)) are
    decrypted with O(decryption). With O(decryption) given, a backup that is not encrypted is refused
    (unless O(allow_unencrypted)), since this job encrypts and a plain backup was not written by it.
  - With O(signing), only a backup whose manifest the job's key signed is restored.
    O(latest) and O(before) never pick a backup dated after now (a planted backup dated 2030, a host
    with a wrong clock); such backups are named in a warning.
author:
  - songmetrix engineering (@songmetrix)
extends_documentation_fragment:
  - songmetrix.backup.storage
  - songmetrix.backup.encryption.DECRYPTION
  - songmetrix.backup.signing
options:
  allow_unauthenticated:
    description:
      - With O(signing), restore a backup whose manifest the key did not sign (from before the job had a
        key, or a planted one; know which), with a warning. For a person at a keyboard, never a schedule.
    type: bool
    default: false
  allow_unencrypted:
    description:
      - With O(decryption), restore a backup that is not encrypted (from before the job encrypted its
        backups), with a warning.
    type: bool
    default: false
  manifest_key:
    description: Restore this backup, given by the storage key of its manifest.
    type: str
  job:
    description: The job whose backup is restored, with O(latest) or O(before).
    type: str
  latest:
    description:
      - Restore the newest backup of O(job), leaving out backups dated after now and, with O(signing), those
        its key did not sign (both named in a warning).
    type: bool
    default: false
  before:
    description:
      - Restore the newest backup of O(job) started at or before this time (ISO 8601, such as
        C(2026-11-23T02:00:00Z) or C(2026-11-23); a time without offset is UTC, a bare date is
        the start of that day in UTC).
    type: str
  kind:
    description: With O(job), consider only C(scheduled) or only C(manual) backups; both when omitted.
    type: str
    choices: [scheduled, manual]
  target:
    description: Where to restore the backup and how to connect to it.
    type: dict
    required: true
    suboptions:
      engine:
        description:
          - The kind of target; it must match the backup's engine (C(mysql) and C(mariadb) are interchangeable;
            a C(supabase) backup restores into C(supabase) or C(postgresql)).
        type: str
        required: true
        choices: [postgresql, mysql, mariadb, sqlite, files, mongodb, mssql, supabase]
      host:
        description: Database server host name or address; the local socket when omitted.
        type: str
      port:
        description: Database server port; the engine's default when omitted.
        type: int
      user:
        description: User to connect as.
        type: str
      password:
        description: Password of O(target.user). Never logged, never on a command line.
        type: str
      database:
        description:
          - Database to restore into (C(postgresql), C(mysql), C(mariadb), C(mongodb), C(mssql)).
          - For C(mongodb), the backup's database when omitted; must be omitted for a backup of a whole
            server (each database is restored under its own name).
        type: str
      ssl_mode:
        description: TLS requirement for the connection, in PostgreSQL's vocabulary (as for the dump module's source).
        type: str
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      connect_timeout:
        description: Seconds to wait for the connection.
        type: int
      path:
        description: The database file to write for C(sqlite), the folder to restore into for C(files).
        type: path
      executable:
        description:
          - Path of C(pg_restore) (C(psql) is taken from the same folder), of the C(mysql)/C(mariadb)
            client, of C(mongorestore) (C(mongodump) is taken from the same folder) or of C(sqlcmd); found on
            PATH when omitted.
          - A PostgreSQL custom or directory archive needs a C(pg_restore) at least as new as the C(pg_dump)
            that wrote it (the manifest's C(tool_version)); when the one on PATH is older, the newest
            client under C(/usr/lib/postgresql/*/bin) or C(/usr/pgsql-*/bin) is used, else the task fails
            before the target is touched, naming the package to install.
        type: path
      mongodb:
        description:
          - Options of the C(mongodb) target. The connection string is O(target.mongodb.uri), or is built
            from O(target.host), O(target.port), O(target.user), O(target.password), O(target.ssl_mode)
            and O(target.connect_timeout), as for the dump module's source.
        type: dict
        suboptions:
          uri:
            description:
              - MongoDB connection string (C(mongodb://) or C(mongodb+srv://)); a secret, never logged,
                passed in a mode 0600 C(--config) file. Cannot be combined with O(target.host),
                O(target.port), O(target.user), O(target.password), O(target.ssl_mode) or O(target.connect_timeout).
            type: str
          auth_database:
            description: Database the user authenticates against (C(--authenticationDatabase)).
            type: str
          oplog_replay:
            description:
              - Replay the oplog captured with the dump module's C(source.mongodb.oplog)
                (C(mongorestore --oplogReplay)). Off when omitted.
            type: bool
      mssql:
        description:
          - SQL Server options (O(target.engine=mssql)); the connection is O(target.host), O(target.port),
            O(target.user) and O(target.password) (C(sqlcmd -E) without a user).
          - A target database that exists is refused unless O(force), which adds C(REPLACE).
          - O(clean), O(create_database), O(scratch), O(schemas), O(tables), O(jobs) and
            O(single_transaction) are not available (C(RESTORE DATABASE) creates the database).
        type: dict
        suboptions:
          mode:
            description:
              - C(native) restores from a temporary C(.bak) on disk, C(url) with C(RESTORE ... FROM URL)
                straight from the S3 storage (SQL Server 2022 and later, O(storage.type=s3) with access keys,
                an uncompressed backup such as one taken in C(url) mode).
              - The mode the backup was taken in when omitted.
              - A backup striped over several objects can only be restored in C(url) mode.
            type: str
            choices: [native, url]
          server_dir:
            description:
              - C(native) mode, the folder SQL Server reads the temporary
                C(.bak) from, as a path on the SQL Server host.
            type: str
          local_dir:
            description:
              - C(native) mode, the same folder seen from the host the module runs on (a mounted share);
                O(target.mssql.server_dir) when omitted. The temporary C(.bak) is created there with mode
                0640, so SQL Server's service account needs to read it (through the folder's group).
            type: path
          move:
            description:
              - Where each file of the database goes, C(MOVE 'logical' TO 'path'), as a dict of logical file
                name to physical path on the SQL Server host, or a list of C({logical, path}) dicts.
              - Cannot be combined with O(target.mssql.data_dir).
            type: raw
          data_dir:
            description:
              - Build the C(MOVE) clauses from C(RESTORE FILELISTONLY), placing every file in this folder of the
                SQL Server host as C(<database>_<logical name><extension>) (log files in
                O(target.mssql.log_dir) when given).
              - Without O(target.mssql.move) and O(target.mssql.data_dir), the files go where the backup says
                (the original paths).
            type: str
          log_dir:
            description: With O(target.mssql.data_dir), the folder for the log files.
            type: str
          recovery:
            description: C(RECOVERY) (the database is usable afterwards); C(NORECOVERY) when false (to apply logs next).
            type: bool
            default: true
          checksum:
            description: C(WITH CHECKSUM), verify the backup's checksums while restoring.
            type: bool
            default: true
          stats:
            description: C(WITH STATS = n) (progress messages every n percent).
            type: int
          s3_endpoint:
            description:
              - C(url) mode, the S3 endpoint as SQL Server reaches
                it (C(host) or C(host:port)), as for the dump module.
            type: str
          credential:
            description:
              - C(url) mode, the name of the SQL Server
                credential created or updated with the storage's access key.
            type: str
          encrypt:
            description: Connection encryption, C(sqlcmd -N); the tool's default when omitted.
            type: str
            choices: [strict, mandatory, optional]
          trust_server_certificate:
            description: C(sqlcmd -C), accept the server's certificate without validating it. Only when set.
            type: bool
            default: false
          flavour:
            description: Which C(sqlcmd) is installed, C(odbc) (mssql-tools18) or C(go) (go-sqlcmd); C(auto) detects it.
            type: str
            default: auto
            choices: [auto, odbc, go]
      supabase:
        description:
          - Supabase options (O(target.engine=supabase)). The artifact (the user's schemas and data) is restored
            as a PostgreSQL backup; O(target.ssl_mode) defaults to C(require). A database with relations only
            in the Supabase-managed schemas (a new project) counts as empty.
          - The attachments asked for are applied with C(psql) before the artifact, in the order roles,
            managed schema, managed data; each is checked against its SHA-256 first. Storage objects are
            restored by hand (docs/engines/supabase.md).
        type: dict
        suboptions:
          connection_string:
            description:
              - The target project's connection string (C(postgresql://...)); a secret, never logged. Cannot be
                combined with O(target.host), O(target.port), O(target.user), O(target.password) or
                O(target.database).
            type: str
          roles:
            description:
              - Apply the roles attachment first (the reserved Supabase roles are not in it); a role that exists
                already is left as it is, any other error fails the restore.
            type: bool
            default: false
          managed_schema:
            description:
              - Apply the managed-schema attachment (C(auth), C(storage), ... definitions) in one transaction.
                For a plain PostgreSQL target only; a Supabase project has these schemas.
            type: bool
            default: false
          managed_data:
            description:
              - Apply the managed-data attachment (C(auth) users, C(storage) records) in one transaction,
                before the artifact (whose tables may reference C(auth.users)).
            type: bool
            default: false
  create_database:
    description: Create the target database when it does not exist (otherwise a missing database fails the task).
    type: bool
    default: false
  clean:
    description:
      - Restore over a non-empty database.
      - PostgreSQL (custom and directory format only) runs C(pg_restore --clean --if-exists), dropping
        the objects of the backup before recreating them.
      - For MySQL/MariaDB the dump itself drops and recreates each table it holds; tables that are
        not in the backup are left alone.
      - For MongoDB, C(mongorestore --drop) drops each collection of the backup before restoring it;
        collections that are not in the backup are left alone. Without O(clean) no C(--drop) is passed.
    type: bool
    default: false
  force:
    description:
      - Restore over a non-empty database without cleaning it (SQL Server, over an existing database with
        C(RESTORE ... WITH REPLACE)), replace an existing SQLite file
        (and its stale C(-wal), C(-shm), C(-journal) files), or extract into a non-empty folder
        (top-level entries of the same name are replaced).
    type: bool
    default: false
  no_owner:
    description: PostgreSQL custom and directory format, do not restore object ownership (C(pg_restore --no-owner)).
    type: bool
    default: true
  schemas:
    description:
      - PostgreSQL custom and directory format, restore only the objects in these schemas
        (C(pg_restore --schema)); the schemas themselves must exist in the target.
    type: list
    elements: str
  tables:
    description: PostgreSQL custom and directory format, restore only these tables (C(pg_restore --table)).
    type: list
    elements: str
  jobs:
    description:
      - PostgreSQL directory format, number of parallel C(pg_restore) jobs.
      - A custom-format archive read from a stream cannot be restored in parallel (pg_restore needs
        to seek in it); values above 1 are refused for the custom and plain formats.
    type: int
  single_transaction:
    description:
      - PostgreSQL, restore in one transaction (C(psql --single-transaction) for plain format,
        C(pg_restore --single-transaction) otherwise, not with O(jobs)), so a failed restore leaves
        nothing behind.
      - Refused for MySQL/MariaDB, whose dumps hold DDL that commits implicitly.
    type: bool
    default: false
  spool_dir:
    description:
      - Folder for the temporary extraction of a PostgreSQL directory-format backup (it needs room
        for the whole uncompressed dump); the system's temporary folder when omitted.
      - It is named C(.songmetrix-private-<pid>-pg-directory-restore-*) after the module process.
        One that a SIGKILLed run left behind is removed by a later run, once its process is gone.
    type: path
  max_restore_size:
    description:
      - The most bytes a backup may expand to, decompressed, such as C(10G) or C(512M) (binary units;
        a plain number is bytes). A backup whose manifest says more is refused before it is read;
        one that expands to more while it is read (a decompression bomb, a lying manifest) fails
        there. Files, SQLite and PostgreSQL directory-format restores are then left as they were;
        a database loaded by C(psql), C(pg_restore) or the C(mysql)/C(mariadb) client may hold a
        partial restore (use O(single_transaction) for PostgreSQL).
      - Off when omitted. Not available for C(mongodb) and C(mssql) targets.
    type: str
  preserve_owner:
    description:
      - Files targets, set each entry's owner and group to the numeric uid and gid stored in the archive
        (user and group names are not looked up), and, for a backup signed by O(signing)'s key, keep setuid
        and setgid bits.
      - Defaults to true when the module runs as root and false otherwise; true fails the task when not
        running as root.
      - Without it every entry belongs to the user running the restore and setuid/setgid bits are dropped.
      - A backup that is not authenticated (no O(signing), or O(allow_unauthenticated)) may hold setuid-root
        programs someone planted, so their setuid/setgid bits are dropped, and the task's warning names them.
    type: bool
  verify_first:
    description:
      - For targets that cannot be rolled back (PostgreSQL custom and plain format, MySQL/MariaDB),
        read the whole artifact once and check its SHA-256 before touching the target, so a
        damaged backup fails before loading. It costs one extra read of the artifact from storage.
      - SQLite, files and PostgreSQL directory-format restores never need it, as nothing becomes
        visible before the single read has matched.
      - The loading read checks the SHA-256 again in every case.
    type: bool
    default: true
  scratch:
    description:
      - Restore test. Restore into a throw-away target, count the rows of every table exactly
        (C(count(*))), compare them with the manifest's C(table_counts), run O(assertions), then
        remove the throw-away target (also when the test fails, unless O(keep_scratch)).
      - PostgreSQL and MySQL/MariaDB restore into a new database named
        C(<database>_restore_test_<YYYYmmddHHMMSS>) (UTC; the database is O(target.database) or the
        backup's, cut to 63 bytes for PostgreSQL, 64 characters for MySQL/MariaDB) on the
        O(target) server; it implies O(create_database) and cannot be combined with O(clean),
        O(force), O(schemas) or O(tables).
      - SQLite restores into a temporary file and files into a temporary folder, both under
        O(spool_dir) or the system's temporary folder; O(target.path) is not used. A files test
        reports the number of files and their total size.
      - A table missing from the restore, an extra table, or a row count that differs fails the
        task, with a per-table report in RV(restore_test). A backup whose manifest has no
        C(table_counts) (taken with row counts off) is counted but not compared (a warning).
      - In check mode nothing is created, the backup and the target server are checked only.
    type: bool
    default: false
  assertions:
    description:
      - With O(scratch), SQL queries run in the scratch database after the restore; each must return
        exactly one row with one value that is true (PostgreSQL C(t), MySQL/MariaDB C(1)),
        otherwise the task fails.
    type: list
    elements: str
  keep_scratch:
    description: With O(scratch), keep the scratch database, file or folder (for debugging); a warning names it.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Reads the manifest and the whole artifact (checking its SHA-256), connects to the target
        and checks it as a real run would, and returns the actions it would take; writes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in diff_mode).
    support: none
notes:
  - The target database is not locked during the restore; stop the applications that write to it first.
seealso:
  - module: songmetrix.backup.dump
  - module: songmetrix.backup.verify
  - module: songmetrix.backup.backup_info
"""

EXAMPLES = r"""
- name: Restore the newest backup of a job into a new PostgreSQL database
  songmetrix.backup.restore:
    job: billing-db
    latest: true
    create_database: true
    target:
      engine: postgresql
      host: db2.example.com
      user: postgres
      password: "{{ vault_pg_password }}"
      database: billing_restored
    storage:
      type: s3
      bucket: backups
      prefix: prod

- name: Restore the last backup taken before an incident, over the existing database
  songmetrix.backup.restore:
    job: shop
    before: "2026-11-23T09:30:00Z"
    clean: true
    target:
      engine: mariadb
      host: 127.0.0.1
      user: root
      password: "{{ vault_mariadb_password }}"
      database: shop
    storage:
      path: /srv/backups

- name: Restore a directory-format PostgreSQL backup with four parallel jobs
  songmetrix.backup.restore:
    manifest_key: prod/warehouse/2026/11/23/warehouse-20261123T020000Z.manifest.json
    jobs: 4
    spool_dir: /var/tmp
    target:
      engine: postgresql
      database: warehouse
    storage:
      type: s3
      bucket: backups
      prefix: prod

- name: Restore test of the newest backup into a throw-away database, dropped afterwards
  songmetrix.backup.restore:
    job: billing-db
    latest: true
    scratch: true
    assertions:
      - SELECT count(*) > 0 FROM invoices
    target:
      engine: postgresql
      host: db-test.example.com
      user: postgres
      password: "{{ vault_pg_password }}"
    storage:
      path: /srv/backups

- name: Restore the newest MongoDB backup over the existing database, dropping its collections first
  songmetrix.backup.restore:
    job: catalog-mongo
    latest: true
    clean: true
    target:
      engine: mongodb
      host: mongo2.example.com
      user: restore
      password: "{{ vault_mongo_restore_password }}"
      database: catalog
      mongodb:
        auth_database: admin
    storage:
      path: /srv/backups

- name: Restore a SQL Server backup under a new name, its files moved (a share mounted on both hosts)
  songmetrix.backup.restore:
    job: erp
    latest: true
    target:
      engine: mssql
      host: sql2.example.com
      user: restore_operator
      password: "{{ vault_mssql_password }}"
      database: erp_copy
      mssql:
        server_dir: 'D:\Restore'
        local_dir: /mnt/sql2-restore
        data_dir: 'D:\Data'
        log_dir: 'L:\Logs'
    storage:
      path: /srv/backups

- name: Restore a file tree into a new folder
  songmetrix.backup.restore:
    job: uploads
    latest: true
    target:
      engine: files
      path: /srv/uploads.restored
    storage:
      path: /srv/backups
"""

RETURN = r"""
manifest_key:
  description: Key of the restored backup's manifest.
  returned: always
  type: str
manifest:
  description: The restored backup's manifest.
  returned: always
  type: dict
engine:
  description: Engine of the backup.
  returned: always
  type: str
  sample: postgresql
target:
  description: The target, without secrets.
  returned: always
  type: dict
  contains:
    engine:
      description: Target engine.
      type: str
    host:
      description: Database server host (database targets).
      type: str
    port:
      description: Database server port (database targets).
      type: int
    user:
      description: User (database targets).
      type: str
    database:
      description: Database (database targets).
      type: str
    path:
      description: Absolute path of the SQLite file or of the folder (sqlite and files targets).
      type: str
actions:
  description: What the restore did (or, in check mode, would do).
  returned: always
  type: list
  elements: str
command:
  description:
    - The loading command line, without secrets (MySQL/MariaDB's option file shows as C(/dev/fd/N),
      MongoDB's config file as C(<0600 config file>)).
  returned: for postgresql, mysql, mariadb and mongodb targets
  type: list
  elements: str
bytes_read:
  description: Stored bytes read from storage, the verification read included.
  returned: always
  type: int
sha256:
  description: SHA-256 of the stored artifact, as read and checked.
  returned: always
  type: str
restore_test:
  description: The restore test's report (also in the failure's result when the test failed).
  returned: with scratch, when not in check mode
  type: dict
  contains:
    scratch:
      description: Name of the scratch database, or path of the scratch SQLite file or folder.
      type: str
    dropped:
      description: Whether the scratch was removed.
      type: bool
    tables:
      description:
        - One entry per table of the manifest or of the restore, sorted by name; C(ok) is null
          when the manifest has no C(table_counts).
      type: list
      elements: dict
      sample: [{"table": "public.items", "expected": 2001, "actual": 2001, "ok": true}]
    assertions:
      description: One entry per assertion, with C(sql), C(ok), C(result) (the query's output) or C(error).
      type: list
      elements: dict
    files:
      description: Number of regular files restored (files backups).
      type: int
    bytes:
      description: Their total size in bytes (files backups).
      type: int
    ok:
      description: Whether every table and every assertion passed.
      type: bool
duration_seconds:
  description: Wall time of the restore.
  returned: always
  type: float
"""

from ansible_collections.songmetrix.backup.plugins.module_utils.module_base import BackupModule
from ansible_collections.songmetrix.backup.plugins.module_utils.restore import run_restore
from ansible_collections.songmetrix.backup.plugins.module_utils.specs import (
    DECRYPTION_OPTIONS,
    signing_specs,
    storage_spec,
    target_spec,
)


def main():
    module = BackupModule(
        argument_spec=dict(
            manifest_key=dict(type="str", no_log=False),
            job=dict(type="str"),
            latest=dict(type="bool", default=False),
            before=dict(type="str"),
            kind=dict(type="str", choices=["scheduled", "manual"]),
            target=target_spec(),
            create_database=dict(type="bool", default=False),
            clean=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
            no_owner=dict(type="bool", default=True),
            schemas=dict(type="list", elements="str"),
            tables=dict(type="list", elements="str"),
            jobs=dict(type="int"),
            single_transaction=dict(type="bool", default=False),
            spool_dir=dict(type="path"),
            max_restore_size=dict(type="str"),
            preserve_owner=dict(type="bool"),
            verify_first=dict(type="bool", default=True),
            scratch=dict(type="bool", default=False),
            assertions=dict(type="list", elements="str"),
            keep_scratch=dict(type="bool", default=False),
            decryption=dict(type="dict", options=DECRYPTION_OPTIONS),
            allow_unencrypted=dict(type="bool", default=False),
            allow_unauthenticated=dict(type="bool", default=False),
            storage=storage_spec(),
            **signing_specs()
        ),
        required_one_of=[("manifest_key", "job")],
        mutually_exclusive=[("manifest_key", "job")],
        supports_check_mode=True,
    )
    module.run(lambda m: run_restore(m.params, check_mode=m.check_mode))


if __name__ == "__main__":
    main()
