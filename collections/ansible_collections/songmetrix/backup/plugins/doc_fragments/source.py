class ModuleDocFragment(object):
    # The source option shared by modules that read a database or a directory.
    DOCUMENTATION = r"""
options:
  source:
    description:
      - What to back up and how to connect to it.
      - Secrets are passed to the dump tools through the environment (PostgreSQL), an inherited
        pipe read as an option file (MySQL/MariaDB) or a mode 0600 C(--config) file removed after
        the run (MongoDB), never on the command line.
    type: dict
    required: true
    suboptions:
      engine:
        description:
          - The kind of source.
          - C(postgresql) runs C(pg_dump); C(mysql) runs C(mysqldump); C(mariadb) runs C(mariadb-dump)
            (or C(mysqldump) when it is missing); C(sqlite) takes an online copy with SQLite's backup API;
            C(files) writes a tar stream of a directory; C(mongodb) runs C(mongodump --archive) (MongoDB
            Database Tools 100.3.0 or later), see O(source.mongodb).
        type: str
        required: true
        choices: [postgresql, mysql, mariadb, sqlite, files, mongodb]
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
          - Database to back up (C(postgresql), C(mysql), C(mariadb)).
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
        description: Path of the dump tool to use instead of the one found on E(PATH).
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
"""
