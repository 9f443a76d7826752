class ModuleDocFragment(object):
    # The source option shared by modules that read a database or a directory.
    DOCUMENTATION = r"""
options:
  source:
    description:
      - What to back up and how to connect to it.
      - Secrets are passed to the dump tools through the environment (PostgreSQL; C(SQLCMDPASSWORD) for
        SQL Server), an inherited pipe read as an option file (MySQL/MariaDB) or a mode 0600
        C(--config) file removed after the run (MongoDB), never on the command line.
    type: dict
    required: true
    suboptions:
      engine:
        description:
          - The kind of source.
          - C(postgresql) runs C(pg_dump); C(mysql) runs C(mysqldump); C(mariadb) runs C(mariadb-dump)
            (or C(mysqldump) when it is missing); C(sqlite) takes an online copy with SQLite's backup API;
            C(files) writes a tar stream of a directory; C(mongodb) runs C(mongodump --archive) (MongoDB
            Database Tools 100.3.0 or later), see O(source.mongodb); C(mssql) runs C(BACKUP DATABASE)
            through C(sqlcmd) (see O(source.mssql)); C(supabase) runs C(pg_dump) against a Supabase
            project's PostgreSQL and keeps roles, managed schemas and Storage objects beside it (see
            O(source.supabase)).
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
        description: Password of O(source.user). Never logged, never on a command line.
        type: str
      database:
        description:
          - Database to back up (C(postgresql), C(mysql), C(mariadb), C(mssql)).
          - For C(mongodb) (C(mongodump --db)), optional; every database of the server when omitted.
        type: str
      ssl_mode:
        description:
          - TLS requirement for the connection, in PostgreSQL's vocabulary.
          - For MySQL clients it maps to C(--ssl-mode); for MariaDB clients to C(ssl) and
            C(ssl-verify-server-cert).
        type: str
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      connect_timeout:
        description: Seconds to wait for the connection.
        type: int
      path:
        description:
          - The database file for C(sqlite), the directory for C(files).
          - For C(files), symlinks are stored as links and never followed, and every entry is opened without
            following a symlink. An entry that is replaced (by a symlink or another file, as another local
            user could do while the backup runs) between the walk's look at it and its opening is skipped
            with a warning naming it, never stored.
        type: path
      include:
        description:
          - Tables (C(postgresql) patterns as in C(pg_dump --table), exact names for C(mysql)/C(mariadb))
            or file glob patterns (C(files)) to back up; everything when omitted.
          - For C(files), patterns are matched against the path relative to O(source.path) and
            against the entry's name; C(*) also matches C(/); a matching directory brings its whole subtree.
          - For C(mongodb), one collection of O(source.database) (C(mongodump --collection)); mongodump
            dumps one collection or a whole database, so several names are refused (list the collections
            to leave out in O(source.exclude) instead), as is a combination with O(source.exclude).
        type: list
        elements: str
      exclude:
        description:
          - Tables or file glob patterns to leave out. An excluded directory is not entered.
          - For C(mongodb), collections of O(source.database) (C(mongodump --excludeCollection), one per name).
        type: list
        elements: str
      include_schemas:
        description: PostgreSQL schemas to back up (C(pg_dump --schema) patterns).
        type: list
        elements: str
      exclude_schemas:
        description: PostgreSQL schemas to leave out (C(pg_dump --exclude-schema) patterns).
        type: list
        elements: str
      format:
        description:
          - PostgreSQL dump format. C(custom) (the default) is restored with C(pg_restore);
            C(plain) is SQL for C(psql); C(directory) allows O(source.jobs) parallel dumping
            and is stored as a tar of the dump directory.
          - C(directory) cannot stream from C(pg_dump), so it is written to O(spool_dir) first.
        type: str
        choices: [custom, plain, directory]
      jobs:
        description: Parallel C(pg_dump) workers; needs O(source.format=directory).
        type: int
      executable:
        description: Path of the dump tool (C(sqlcmd) for C(mssql)) to use instead of the one found on E(PATH).
        type: path
      mongodb:
        description:
          - Options of the C(mongodb) engine. The connection string is O(source.mongodb.uri), or is built
            from O(source.host), O(source.port), O(source.user), O(source.password), O(source.ssl_mode)
            and O(source.connect_timeout) (user and password percent-encoded). It is written to a
            mode 0600 YAML file given to C(mongodump --config) and removed after the run, so no
            password is ever on a command line.
          - O(source.ssl_mode) maps to C(tls=false) (C(disable)), C(tls=true&tlsInsecure=true)
            (C(require)), C(tls=true&tlsAllowInvalidHostnames=true) (C(verify-ca)) and C(tls=true)
            (C(verify-full)); C(allow) and C(prefer) are refused (MongoDB has no opportunistic TLS).
        type: dict
        suboptions:
          uri:
            description:
              - MongoDB connection string (C(mongodb://) or C(mongodb+srv://)), credentials included if
                needed; a secret, never logged. Cannot be combined with O(source.host), O(source.port),
                O(source.user), O(source.password), O(source.ssl_mode) or O(source.connect_timeout).
            type: str
          auth_database:
            description: Database the user authenticates against (C(mongodump --authenticationDatabase)).
            type: str
          oplog:
            description:
              - Capture the oplog written during the dump (C(mongodump --oplog)), for a point-in-time
                archive of a replica set member; restore it with the restore module's C(target.mongodb.oplog_replay).
              - Only for a dump of the whole server, so O(source.database) must be unset (mongodump refuses
                C(--oplog) with C(--db)). Off when omitted.
            type: bool
          read_preference:
            description: Replica set member to read from (C(mongodump --readPreference)).
            type: str
            choices: [primary, primaryPreferred, secondary, secondaryPreferred, nearest]
      mssql:
        description:
          - SQL Server options (O(source.engine=mssql)). The connection is O(source.host) (a named instance
            as C(host\instance)), O(source.port), O(source.user) and O(source.password); without a user,
            C(sqlcmd -E) (integrated authentication).
          - The password goes to C(sqlcmd) only through the E(SQLCMDPASSWORD) environment variable; the T-SQL,
            which holds the S3 secret in C(url) mode, only through a 0600 temporary file (C(sqlcmd -i)).
          - Both C(sqlcmd) from mssql-tools18 (ODBC) and go-sqlcmd are supported.
        type: dict
        suboptions:
          mode:
            description:
              - C(native) runs C(BACKUP DATABASE ... TO DISK) into O(source.mssql.server_dir), checks the file
                with C(RESTORE VERIFYONLY) and streams it from O(source.mssql.local_dir) through compression,
                checksum and storage like any other dump.
              - C(url) (SQL Server 2022 and later) runs C(BACKUP DATABASE ... TO URL = 's3://...') straight into
                the job's storage, which must be O(storage.type=s3) with O(storage.access_key) and
                O(storage.secret_key); the module then reads the object(s) back to record their sizes and
                SHA-256 and writes the manifest. C(compression) does not apply (the stored objects are the
                C(.bak) as SQL Server wrote it).
            type: str
            default: native
            choices: [native, url]
          server_dir:
            description:
              - C(native) mode, the folder SQL Server writes the C(.bak) to, as a path on the SQL Server host
                (C(/var/opt/mssql/backup), C(D:\Backups), or a share such as C(\\nas\sql)).
              - The service account of SQL Server must be able to write there.
            type: str
          local_dir:
            description:
              - C(native) mode, the same folder as O(source.mssql.server_dir) seen from the host the module runs
                on (where a share is mounted); O(source.mssql.server_dir) when omitted (the module runs on the
                database host).
              - The module's user must be able to read the C(.bak) there and, for O(source.mssql.remove_bak),
                delete it.
            type: path
          remove_bak:
            description: C(native) mode, remove the C(.bak) after its manifest is stored, and after a failure.
            type: bool
            default: true
          copy_only:
            description: C(WITH COPY_ONLY), so the backup does not change the differential base or break a log chain.
            type: bool
            default: true
          compression:
            description: C(WITH COMPRESSION) (SQL Server's own backup compression).
            type: bool
            default: true
          checksum:
            description:
              - C(WITH CHECKSUM) (page checksums verified while backing up, a backup checksum written);
                C(NO_CHECKSUM) when false. C(RESTORE VERIFYONLY) then checks the checksums too.
            type: bool
            default: true
          init:
            description: C(native) mode, C(WITH INIT) (overwrite the backup sets of the file).
            type: bool
            default: true
          format:
            description: C(native) mode, C(WITH FORMAT) (write a new media header). C(url) mode always uses C(FORMAT).
            type: bool
            default: true
          verify:
            description: Run C(RESTORE VERIFYONLY) on the new backup before it is stored; a failure fails the task.
            type: bool
            default: true
          stats:
            description: C(WITH STATS = n) (progress messages every n percent).
            type: int
          stripes:
            description:
              - C(url) mode, the number of URLs (objects) the backup is striped over (1 to 64), for large
                databases (an S3 object written by SQL Server is limited by C(MAXTRANSFERSIZE) times 10,000 parts).
              - One stripe is stored as C(<stem>.bak); several as C(<stem>.stripe1ofN.bak) (the manifest's
                C(artifact)) and the others, listed in the manifest's C(attachments).
            type: int
            default: 1
          max_transfer_size:
            description: C(url) mode, C(MAXTRANSFERSIZE) in bytes (the part size SQL Server uploads; 20 MiB suits S3).
            type: int
            default: 20971520
          s3_endpoint:
            description:
              - C(url) mode, the S3 endpoint as SQL Server reaches it (C(host) or C(host:port), HTTPS only); the
                host and port of O(storage.endpoint_url) when omitted, C(s3.<region>.amazonaws.com) without one.
            type: str
          credential:
            description:
              - C(url) mode, the name of the SQL Server credential the module creates or updates with the
                storage's access key (C(IDENTITY = 'S3 Access Key')); C(s3://<endpoint>/<bucket>) when omitted.
            type: str
          encrypt:
            description:
              - Connection encryption, C(sqlcmd -N) (C(strict) is TDS 8.0); the tool's default when omitted
                (mandatory for mssql-tools18 and go-sqlcmd).
            type: str
            choices: [strict, mandatory, optional]
          trust_server_certificate:
            description: C(sqlcmd -C), accept the server's certificate without validating it. Only when set.
            type: bool
            default: false
          flavour:
            description:
              - Which C(sqlcmd) is installed, C(odbc) (mssql-tools18) or C(go) (go-sqlcmd); C(auto) tells them
                apart from C(sqlcmd --version) and C(sqlcmd -?).
            type: str
            default: auto
            choices: [auto, odbc, go]
      supabase:
        description:
          - Options of the C(supabase) engine (a Supabase project's PostgreSQL). The connection is
            O(source.supabase.connection_string), or O(source.host), O(source.port), O(source.user),
            O(source.password) and O(source.database) (C(postgres) when omitted); use the direct
            connection (C(db.<ref>.supabase.co)) or the session pooler (port 5432), never the transaction
            pooler (port 6543, refused). O(source.ssl_mode) defaults to C(require) for this engine. The
            password reaches the tools in E(PGPASSWORD), never on a command line.
          - The artifact is C(pg_dump) of the user's schemas and their data, every Supabase-managed schema
            excluded (C(auth), C(storage), C(extensions), C(realtime), C(graphql), C(graphql_public), C(vault),
            C(pgsodium), C(supabase_functions), C(supabase_migrations), C(net), C(cron), C(pgbouncer),
            C(_realtime), C(_analytics) and the others the Supabase CLI leaves out). The other options of
            the PostgreSQL engine (O(source.format), O(source.include), O(source.exclude_schemas), ...) apply.
          - Beside it, as attachments of the same backup (keys sharing the manifest's stem, listed in the
            manifest's C(attachments) with size and SHA-256, compressed and encrypted like the artifact) come
            C(roles), C(managed-schema), C(managed-data) and one C(storage-object) per copied Storage object.
        type: dict
        suboptions:
          connection_string:
            description:
              - The project's connection string, C(postgresql://user:password@host:port/database?sslmode=...);
                a secret, never logged. Only C(sslmode) and C(connect_timeout) may follow the C(?).
              - Cannot be combined with O(source.host), O(source.port), O(source.user), O(source.password)
                or O(source.database).
            type: str
          roles:
            description:
              - Keep the roles attachment, C(pg_dumpall --roles-only --no-role-passwords), with the
                roles Supabase reserves (C(anon), C(authenticated), C(service_role), C(postgres),
                C(supabase_admin), ...) commented out.
            type: bool
            default: true
          managed_schemas:
            description:
              - Keep the managed-schema attachment, C(pg_dump --schema-only) of the managed schemas that exist
                and that the user may read.
            type: bool
            default: true
          managed_data:
            description:
              - Keep the managed-data attachment, C(pg_dump --data-only) of C(auth), C(storage) and
                C(supabase_functions) (users, bucket and object records), without their migration history,
                as the Supabase CLI's data dump does.
            type: bool
            default: true
          require_attachments:
            description:
              - Fail the backup when an attachment cannot be made (the user lacks the rights, as a pooler
                user may). Without it such an attachment is skipped with a warning.
            type: bool
            default: false
          storage_buckets:
            description:
              - Supabase Storage buckets whose objects are copied into the backup, through Storage's
                S3-compatible endpoint; C(all) alone copies every bucket.
              - Each object is streamed to C(<stem>.storage/<bucket>/<object key>) in the backup's storage
                (path parts that are empty, C(.), C(..) or hold C(%) or control characters are
                percent-encoded) and listed in the manifest with its bucket, key, content type, size and
                SHA-256. Objects are not recompressed; they are encrypted when the job encrypts.
            type: list
            elements: str
          storage_endpoint:
            description:
              - Storage's S3 endpoint, C(https://<ref>.supabase.co/storage/v1/s3).
              - Needed with O(source.supabase.storage_buckets).
            type: str
          storage_region:
            description:
              - The project's region, as Storage's S3 connection settings show it.
              - Needed with O(source.supabase.storage_buckets).
            type: str
          storage_access_key:
            description: Access key ID of a Storage S3 access key. Needed with O(source.supabase.storage_buckets).
            type: str
          storage_secret_key:
            description: Its secret access key; never logged. Needed with O(source.supabase.storage_buckets).
            type: str
"""
