"""Restore targets: where a backup's stream is loaded (a database through its client, a file, a folder).

A target has: describe() (no secrets), preflight() (connect, emptiness; read only; returns the
actions it would take), prepare() (create the database), load(read) and ``command`` (argv, no
secrets). ``read(writer)`` streams the stored artifact, decompressed, into ``writer`` and raises
unless every stored byte matched the manifest's size and SHA-256. ``checked_before_visible``
says whether a damaged artifact is caught before anything reaches the target without a
separate verification read (files, SQLite and PostgreSQL directory format: yes).

What a backup holds is untrusted (storage may have been written by someone else): SQL is loaded
by sandboxed clients (psql_sandbox, mysql_sandbox), archives are extracted confined to their
folder (restore_tar), and ``max_restore_size`` caps the bytes a backup may expand to.
"""

import os
import shutil
import sqlite3
import subprocess
import tempfile

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.mysql_sandbox import sandbox_args
from ansible_collections.songmetrix.backup.plugins.module_utils.pg_client import pg_restore_for
from ansible_collections.songmetrix.backup.plugins.module_utils.private_files import create_private_dir
from ansible_collections.songmetrix.backup.plugins.module_utils.psql_sandbox import RestrictedScript, sandboxed_psql
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import (
    Child,
    child_env,
    find_tool,
    last_lines,
    run_capture,
    secret_pipe,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.restore_tar import ThreadConsumer, extract_stream
from ansible_collections.songmetrix.backup.plugins.module_utils.source_mysql import (
    CLIENT_TOOLS,
    _first_tool,
    defaults_file,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.validation import byte_size, no_control_chars

CONNECTION_KEYS = ("host", "port", "user", "password", "database", "ssl_mode", "connect_timeout")
FAMILIES = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite", "files": "files",
            "mongodb": "mongodb", "mssql": "mssql", "supabase": "postgresql"}
# Relations that make a PostgreSQL database "not empty": anything a restore would collide with.
PG_USER_RELATIONS = (
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%';\n"
)


class ChildWriter(object):
    """A pipeline writer feeding a loader's stdin; finish() waits for it and checks its exit status."""

    def __init__(self, child):
        self.child = child

    def write(self, data):
        try:
            self.child.stdin.write(data)
        except (OSError, ValueError):
            raise BackupError(self._failure() or "%s stopped reading its input" % self.child.name)

    def _failure(self):
        try:
            self.child.stdin.close()
        except OSError:
            pass
        return self.child.failure(self.child.wait())

    def finish(self):
        message = self._failure()
        if message:
            raise BackupError(message)

    def abort(self):
        self.child.kill()
        try:
            self.child.stdin.close()
        except OSError:
            pass
        self.child.wait()


class SizeCap(object):
    """A pipeline writer in front of another that fails once more than ``limit`` bytes came through
    (max_restore_size: a decompression bomb stops here)."""

    def __init__(self, writer, limit):
        self.writer = writer
        self.limit = limit
        self.count = 0

    def write(self, data):
        self.count += len(data)
        if self.count > self.limit:
            raise BackupError("the backup expands to more than max_restore_size (%d bytes): refused" % self.limit)
        self.writer.write(data)

    def finish(self):
        if hasattr(self.writer, "finish"):
            return self.writer.finish()
        return None

    def abort(self):
        if hasattr(self.writer, "abort"):
            self.writer.abort()


def max_restore_size(options):
    """max_restore_size in bytes, None when off."""
    size = byte_size("max_restore_size", options.get("max_restore_size"))
    if size == 0:
        raise ValidationError("max_restore_size must be more than 0 bytes (leave it out for no limit)")
    return size


def capped(writer, options):
    limit = max_restore_size(options)
    return writer if limit is None else SizeCap(writer, limit)


def _conninfo(database):
    """A libpq connection string naming only the database (a name with '=' is not parsed as one)."""
    return "dbname='%s'" % database.replace("\\", "\\\\").replace("'", "\\'")


def _refuse(target, keys, engine, hint):
    for key in keys:
        if target.get(key) not in (None, ""):
            raise ValidationError("target.%s is not used by engine %s (%s)" % (key, engine, hint))


class PostgresqlTarget(object):
    checked_before_visible = False
    user_relations_sql = PG_USER_RELATIONS  # what makes the target "not empty" (a Supabase target skips its own)

    def __init__(self, target, options, record):
        self.target = target
        self.options = options
        self.database = target.get("database")
        if not self.database:
            raise ValidationError("target.database is required for engine postgresql")
        _refuse(target, ("path",), "postgresql", "use target.database")
        no_control_chars("target.database", self.database)
        self.format = record.get("format")
        if self.format not in ("custom", "plain", "directory"):
            raise ValidationError("the backup's format %r is not a PostgreSQL dump format" % (self.format,))
        jobs = options.get("jobs")
        if jobs is not None and jobs < 1:
            raise ValidationError("jobs must be 1 or more")
        if jobs and jobs > 1 and self.format != "directory":
            raise ValidationError("jobs needs a directory-format backup: pg_restore cannot restore a %s-format "
                                  "archive read from a stream in parallel" % self.format)
        if self.format == "plain" and (options.get("schemas") or options.get("tables")):
            raise ValidationError("schemas and tables need a custom or directory-format backup (pg_restore); "
                                  "this one is plain SQL")
        if self.format == "plain" and options.get("clean"):
            raise ValidationError("clean needs a custom or directory-format backup (pg_restore --clean); for a "
                                  "plain SQL backup drop and recreate the database, or use force")
        if options.get("single_transaction") and jobs and jobs > 1:
            raise ValidationError("single_transaction cannot be combined with jobs")
        self.checked_before_visible = self.format == "directory"
        self.pg_restore = pg_restore_for(record, target.get("executable"), "target.executable")
        sibling = os.path.join(os.path.dirname(self.pg_restore), "psql")
        self._psql_chosen = target.get("executable") and os.access(sibling, os.X_OK)
        self.psql = sibling if os.access(sibling, os.X_OK) else find_tool("psql", package_hint="postgresql-client")
        if self.format == "plain":
            self.sandbox_psql()
        self.exists = None
        self.command = self._argv("<extracted archive>" if self.format == "directory" else None)

    def describe(self):
        t = self.target
        return {"engine": t["engine"], "host": t.get("host"), "port": t.get("port"), "user": t.get("user"),
                "database": self.database}

    def sandbox_psql(self):
        """Use a psql that has \\restrict for SQL from the backup, or refuse now, before anything is loaded."""
        self.psql = sandboxed_psql(self.psql, "target.executable" if self._psql_chosen else None)

    def _env(self):
        t = self.target
        return child_env({"PGHOST": t.get("host"), "PGPORT": t.get("port"), "PGUSER": t.get("user"),
                          "PGPASSWORD": t.get("password"), "PGSSLMODE": t.get("ssl_mode"),
                          "PGCONNECT_TIMEOUT": t.get("connect_timeout"), "PGAPPNAME": "songmetrix-restore"},
                         drop=("PGDATABASE", "PGSERVICE"))

    def _where(self):
        t = self.target
        return "%s%s/%s" % (t.get("host") or "local socket", ":%s" % t["port"] if t.get("port") else "",
                            self.database)

    def _psql(self, sql, database, what):
        argv = [self.psql, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "--no-password",
                "-v", "dbname=%s" % self.database, "-d", _conninfo(database)]
        try:
            proc = subprocess.run(argv, input=sql.encode("utf-8"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=self._env(), timeout=int(self.target.get("connect_timeout") or 30) + 300,
                                  check=False)  # the status and stderr make the error below
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackupError("%s failed: %s" % (what, exc))
        if proc.returncode != 0:
            raise BackupError("%s at %s failed: %s" % (what, self._where(), last_lines(
                proc.stderr.decode("utf-8", errors="replace"))))
        return proc.stdout.decode("utf-8", errors="replace").strip()

    def preflight(self):
        out = self._psql("SELECT count(*) FROM pg_database WHERE datname = :'dbname';\n", "postgres",
                         "connecting to PostgreSQL")
        self.exists = out == "1"
        if not self.exists:
            if not self.options.get("create_database"):
                raise BackupError("target database %s does not exist (set create_database: true to create it)"
                                  % self._where())
            return ["create database %s" % self.database, "load the %s-format backup" % self.format]
        count = int(self._psql(self.user_relations_sql, self.database, "checking that the target database is empty")
                    or "0")
        if count and not (self.options.get("clean") or self.options.get("force")):
            raise BackupError("target database %s is not empty (%d tables, views or sequences outside the system "
                              "schemas): set clean or force to restore over it" % (self._where(), count))
        state = "a non-empty" if count else "the empty"
        return ["load the %s-format backup into %s database %s" % (self.format, state, self.database)]

    def prepare(self):
        if not self.exists:
            self._psql('CREATE DATABASE :"dbname";\n', "postgres", "creating the database")

    def _argv(self, directory=None):
        o = self.options
        if self.format == "plain":
            argv = [self.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "-d", _conninfo(self.database)]
            if o.get("single_transaction"):
                argv.append("--single-transaction")
            return argv
        argv = [self.pg_restore, "--no-password", "--exit-on-error", "--dbname=%s" % _conninfo(self.database)]
        if o.get("no_owner", True):
            argv.append("--no-owner")
        if o.get("clean"):
            argv += ["--clean", "--if-exists"]
        if o.get("single_transaction"):
            argv.append("--single-transaction")
        if o.get("jobs"):
            argv.append("--jobs=%d" % o["jobs"])
        for schema in o.get("schemas") or []:
            argv.append("--schema=%s" % schema)
        for table in o.get("tables") or []:
            argv.append("--table=%s" % table)
        if directory:
            argv.append(directory)
        return argv

    def load(self, read):
        if self.format != "directory":
            child = Child(os.path.basename(self.command[0]), self.command, env=self._env(), stdin=subprocess.PIPE,
                          stdout=subprocess.DEVNULL)
            writer = ChildWriter(child)
            read(capped(RestrictedScript(writer) if self.format == "plain" else writer, self.options))
            return
        # A directory-format backup is a tar in storage: extract it (confined, files and folders only), then
        # pg_restore -j.
        workdir = create_private_dir(self.options.get("spool_dir"), "pg-directory-restore")
        limit = max_restore_size(self.options)
        try:
            read(capped(ThreadConsumer("extracting the directory-format archive", lambda f: extract_stream(
                f, workdir, max_bytes=limit, files_only="a PostgreSQL directory-format archive")), self.options))
            argv = self._argv(workdir)
            child = Child("pg_restore", argv, env=self._env(), stdout=subprocess.DEVNULL)
            message = child.failure(child.wait())
            if message:
                raise BackupError(message)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _client_family(client):
    rc, out, err = run_capture("mysql client", [client, "--version"])
    if rc != 0:
        raise BackupError("%s --version failed: %s" % (client, last_lines(err or out)))
    return "mariadb" if "mariadb" in os.path.basename(client) or "mariadb" in out.lower() else "mysql"


def _mysql_literal(text):
    return "'%s'" % text.replace("\\", "\\\\").replace("'", "''")


class MysqlTarget(object):
    checked_before_visible = False

    def __init__(self, target, options, record):
        self.target = target
        self.options = options
        self.engine = target["engine"]
        self.database = target.get("database")
        if not self.database:
            raise ValidationError("target.database is required for engine %s" % self.engine)
        _refuse(target, ("path",), self.engine, "use target.database")
        no_control_chars("target.database", self.database)
        for name in ("schemas", "tables", "jobs"):
            if options.get(name):
                raise ValidationError("%s is for PostgreSQL targets only" % name)
        if options.get("single_transaction"):
            raise ValidationError("single_transaction is not available for %s: a mysqldump file holds DDL "
                                  "(DROP/CREATE TABLE), which commits implicitly" % self.engine)
        self.client = _first_tool(CLIENT_TOOLS[self.engine], target.get("executable"))
        self.family = _client_family(self.client)
        self.sandbox = sandbox_args(self.client, self.family)  # refuses a client that cannot load SQL safely
        self.exists = None
        self.command = self._argv("N")

    def describe(self):
        t = self.target
        return {"engine": t["engine"], "host": t.get("host"), "port": t.get("port"), "user": t.get("user"),
                "database": self.database}

    def _where(self):
        t = self.target
        return "%s:%s/%s" % (t.get("host") or "localhost", t.get("port") or 3306, self.database)

    def _fd(self):
        return secret_pipe(defaults_file(self.target, self.family))

    def _sql(self, sql, what):
        fd = self._fd()
        argv = [self.client, "--defaults-extra-file=/dev/fd/%d" % fd, "--batch", "--skip-column-names"]
        try:
            proc = subprocess.run(argv, input=sql.encode("utf-8"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=child_env(), pass_fds=(fd,),
                                  timeout=int(self.target.get("connect_timeout") or 30) + 300,
                                  check=False)  # the status and stderr make the error below
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackupError("%s failed: %s" % (what, exc))
        finally:
            os.close(fd)
        if proc.returncode != 0:
            raise BackupError("%s at %s failed: %s" % (what, self._where(), last_lines(
                proc.stderr.decode("utf-8", errors="replace"))))
        return proc.stdout.decode("utf-8", errors="replace").strip()

    def preflight(self):
        name = _mysql_literal(self.database)
        out = self._sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s;\n"
                        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s;\n" % (name, name),
                        "connecting to %s" % self.engine)
        lines = out.splitlines()
        self.exists = lines[0].strip() != "0"
        count = int(lines[1]) if len(lines) > 1 else 0
        if not self.exists:
            if not self.options.get("create_database"):
                raise BackupError("target database %s does not exist (set create_database: true to create it)"
                                  % self._where())
            return ["create database %s" % self.database, "load the SQL backup"]
        if count and not (self.options.get("clean") or self.options.get("force")):
            raise BackupError("target database %s is not empty (%d tables or views): set clean or force to restore "
                              "over it" % (self._where(), count))
        return ["load the SQL backup into %s database %s" % ("a non-empty" if count else "the empty", self.database)]

    def prepare(self):
        if not self.exists:
            self._sql("CREATE DATABASE `%s`;\n" % self.database.replace("`", "``"), "creating the database")

    def _argv(self, fd):
        return ([self.client, "--defaults-extra-file=/dev/fd/%s" % fd, "--default-character-set=utf8mb4"]
                + self.sandbox + ["--database=%s" % self.database])

    def load(self, read):
        fd = self._fd()
        try:
            child = Child(os.path.basename(self.client), self._argv(fd), env=child_env(), stdin=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, pass_fds=(fd,))
        finally:
            os.close(fd)
        read(capped(ChildWriter(child), self.options))


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileWriter(object):
    def __init__(self, handle):
        self.handle = handle
        self.head = b""

    def write(self, data):
        if len(self.head) < 16:
            self.head += data[: 16 - len(self.head)]
        try:
            self.handle.write(data)
        except OSError as exc:
            raise BackupError("writing the restored database failed: %s" % (exc.strerror or exc))


class SqliteTarget(object):
    checked_before_visible = True
    command = None

    def __init__(self, target, options, record):
        self.target = target
        self.options = options
        self.path = target.get("path")
        if not self.path:
            raise ValidationError("target.path (the database file to write) is required for engine sqlite")
        _refuse(target, CONNECTION_KEYS, "sqlite", "use target.path")
        self.path = os.path.abspath(self.path)

    def describe(self):
        return {"engine": "sqlite", "path": self.path}

    def preflight(self):
        parent = os.path.dirname(self.path)
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            raise BackupError("the folder of target.path (%s) does not exist or is not writable" % parent)
        if os.path.isdir(self.path):
            raise BackupError("target.path %s is a folder, not a database file" % self.path)
        if os.path.lexists(self.path):
            if not self.options.get("force"):
                raise BackupError("target.path %s exists: set force to replace it" % self.path)
            return ["replace %s with the restored database" % self.path]
        return ["write the restored database to %s" % self.path]

    def prepare(self):
        pass

    def load(self, read):
        parent, name = os.path.split(self.path)
        fd, temp = tempfile.mkstemp(prefix=".%s.restore-" % name, dir=parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                writer = _FileWriter(handle)
                read(capped(writer, self.options))
                handle.flush()
                os.fsync(handle.fileno())
            if writer.head != b"SQLite format 3\x00":
                raise BackupError("the restored stream is not a SQLite database (bad header)")
            try:
                conn = sqlite3.connect("file:%s?mode=ro" % temp, uri=True)
                try:
                    problem = conn.execute("PRAGMA quick_check").fetchone()[0]
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                problem = str(exc)
            if problem != "ok":
                raise BackupError("the restored SQLite database fails its integrity check: %s" % problem)
            if os.path.exists(self.path):
                os.chmod(temp, os.stat(self.path).st_mode & 0o777)
                for suffix in ("-wal", "-shm", "-journal"):  # would be applied to the new file
                    if os.path.lexists(self.path + suffix):
                        os.unlink(self.path + suffix)
            os.rename(temp, self.path)
            temp = None
            _fsync_dir(parent)
        finally:
            if temp is not None and os.path.lexists(temp):
                os.unlink(temp)


class FilesTarget(object):
    checked_before_visible = True
    command = None

    def __init__(self, target, options, record, authenticated=False):
        self.target = target
        self.options = options
        self.authenticated = authenticated
        if not target.get("path"):
            raise ValidationError("target.path (the folder to restore into) is required for engine files")
        _refuse(target, CONNECTION_KEYS, "files", "use target.path")
        self.path = os.path.abspath(target["path"])
        self.preserve_owner = preserve_owner(options)
        self.warnings = []

    def describe(self):
        return {"engine": "files", "path": self.path}

    def preflight(self):
        parent = os.path.dirname(self.path)
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            raise BackupError("the parent folder of target.path (%s) does not exist or is not writable" % parent)
        if os.path.lexists(self.path):
            if os.path.islink(self.path) or not os.path.isdir(self.path):
                raise BackupError("target.path %s exists and is not a folder" % self.path)
            if os.listdir(self.path):
                if not self.options.get("force"):
                    raise BackupError("target.path %s is not empty: set force to restore into it" % self.path)
                return ["extract the archive into the non-empty folder %s (entries of the same name are "
                        "replaced)" % self.path]
            return ["extract the archive into the empty folder %s" % self.path]
        return ["extract the archive into the new folder %s" % self.path]

    def prepare(self):
        pass

    def load(self, read):
        parent, name = os.path.split(self.path)
        temp = tempfile.mkdtemp(prefix=".%s.restore-" % name, dir=parent)
        try:
            limit = max_restore_size(self.options)
            consumer = ThreadConsumer("extracting the archive", lambda f: extract_stream(
                f, temp, max_bytes=limit, preserve_owner=self.preserve_owner, keep_setid=self.authenticated))
            read(capped(consumer, self.options))
            self.warnings.extend(consumer.result[1])
            if not os.path.lexists(self.path):
                umask = os.umask(0o022)
                os.umask(umask)
                os.chmod(temp, 0o777 & ~umask)
                os.rename(temp, self.path)
                temp = None
            else:
                for entry in sorted(os.listdir(temp)):
                    dest = os.path.join(self.path, entry)
                    if os.path.isdir(dest) and not os.path.islink(dest):
                        shutil.rmtree(dest)
                    elif os.path.lexists(dest):
                        os.unlink(dest)
                    os.rename(os.path.join(temp, entry), dest)
            _fsync_dir(parent)
        finally:
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)


def preserve_owner(options):
    """Whether a files restore sets the archive's numeric owners: the option, by default when running as root."""
    wanted = options.get("preserve_owner")
    is_root = os.geteuid() == 0
    if wanted and not is_root:
        raise ValidationError("preserve_owner needs root (this restore runs as uid %d); leave it out or set it to "
                              "false" % os.geteuid())
    return is_root if wanted is None else bool(wanted)


TARGETS = {"postgresql": PostgresqlTarget, "mysql": MysqlTarget, "mariadb": MysqlTarget, "sqlite": SqliteTarget,
           "files": FilesTarget}


def make_target(target, options, record, authenticated=False):
    """The target for ``target.engine``; refuses a backup of another engine family.

    ``authenticated``: the manifest is signed by the job's key (a files target then keeps setuid/setgid
    bits where it restores owners)."""
    engine = target.get("engine")
    if engine not in FAMILIES:
        raise ValidationError("target.engine must be one of %s, not %r" % (", ".join(FAMILIES), engine))
    backup_engine = record.get("engine")
    if FAMILIES.get(backup_engine) != FAMILIES[engine]:
        raise ValidationError("the backup is of engine %r: it cannot be restored into a %s target"
                              % (backup_engine, engine))
    if options.get("preserve_owner") and engine != "files":
        raise ValidationError("preserve_owner is for files targets, not %s" % engine)
    limit = max_restore_size(options)
    if limit is not None and engine in ("mongodb", "mssql"):
        raise ValidationError("max_restore_size is not available for %s targets" % engine)
    raw_size = record.get("raw_size")
    if limit is not None and isinstance(raw_size, int) and raw_size > limit:
        raise ValidationError("the backup's manifest says it expands to %d bytes, more than max_restore_size (%d "
                              "bytes): nothing was restored" % (raw_size, limit))
    if engine == "mongodb":
        from ansible_collections.songmetrix.backup.plugins.module_utils.restore_mongodb import MongodbTarget

        return MongodbTarget(target, options, record)
    if engine == "mssql":
        from ansible_collections.songmetrix.backup.plugins.module_utils.restore_mssql import MssqlTarget

        return MssqlTarget(target, options, record)
    if engine == "supabase":
        from ansible_collections.songmetrix.backup.plugins.module_utils.restore_supabase import SupabaseTarget

        return SupabaseTarget(target, options, record)
    if engine == "files":
        return FilesTarget(target, options, record, authenticated)
    return TARGETS[engine](target, options, record)
