"""Source health: connect, server version, latency of a trivial query, database size.

Every engine reuses its source class (sources.make_source): the same option checks as dump, the
same connection code (PostgreSQL's environment, MySQL's option file on /dev/fd/N, sqlcmd's
SQLCMDPASSWORD, MongoDB's 0600 --config file). Nothing here opens a connection of its own kind.

check_source() never raises for a problem of the source: an unreachable server, a wrong password
or a missing tool is a ``critical`` result with a message. Only a bug raises.
"""

import os
import secrets
import sqlite3
import subprocess
import time

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import last_lines, run_capture
from ansible_collections.songmetrix.backup.plugins.module_utils.sources import make_source

HEALTHY, WARNING, CRITICAL = "healthy", "warning", "critical"
_RANK = {None: -1, HEALTHY: 0, WARNING: 1, CRITICAL: 2}


def worst(*statuses):
    """The worst of some statuses (None ignored); None when all are None."""
    found = None
    for status in statuses:
        if _RANK[status] > _RANK[found]:
            found = status
    return found


def _millis(start):
    return round((time.monotonic() - start) * 1000.0, 1)


def _timed(action):
    """(action(), milliseconds it took)."""
    start = time.monotonic()
    value = action()
    return value, _millis(start)


class _Probe(object):
    """What one engine measures; subclasses fill server_version, latency_ms, database_size, notes."""

    def __init__(self, source):
        self.source = source
        self.notes = []

    def server_version(self):
        return getattr(self.source, "server_version", None)

    def latency_ms(self):  # pragma: no cover - every engine overrides it
        return None

    def database_size(self):
        return None


class _PostgresqlProbe(_Probe):
    def _query(self, sql):
        src = self.source
        argv = [src.psql, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "-c", sql]
        rc, out, err = run_capture("psql", argv, env=src._env(),  # pylint: disable=protected-access
                                   timeout=int(src.params.get("connect_timeout") or 30) + 30)
        if rc != 0:
            raise BackupError("query on PostgreSQL failed: %s" % last_lines(err or out))
        return out.strip()

    def latency_ms(self):
        return _timed(lambda: self._query("SELECT 1"))[1]

    def database_size(self):
        return int(self._query("SELECT pg_database_size(current_database())"))


class _MysqlProbe(_Probe):
    def latency_ms(self):
        return _timed(lambda: self.source._client("SELECT 1;\n", "SELECT 1"))[1]  # pylint: disable=protected-access

    def database_size(self):
        lines = self.source._client(  # pylint: disable=protected-access
            "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE();\n", "reading the database size")
        self.notes.append("database_size is the sum of data and index lengths in information_schema "
                          "(InnoDB statistics, approximate)")
        return int(lines[-1].strip()) if lines else 0


class _SqliteProbe(_Probe):
    def __init__(self, source):
        super(_SqliteProbe, self).__init__(source)
        self._version = None

    def _select(self):
        conn = self.source._connect()  # pylint: disable=protected-access
        try:
            self._version = conn.execute("SELECT sqlite_version()").fetchone()[0]
        finally:
            conn.close()

    def server_version(self):
        return self._version or sqlite3.sqlite_version

    def latency_ms(self):
        try:
            return _timed(self._select)[1]
        except sqlite3.Error as exc:
            raise BackupError("cannot query SQLite database %s: %s" % (self.source.path, exc))

    def database_size(self):
        size = os.path.getsize(self.source.path)
        wal = self.source.path + "-wal"
        if os.path.exists(wal):
            self.notes.append("database_size includes the write-ahead log %s" % wal)
            size += os.path.getsize(wal)
        return size


class _FilesProbe(_Probe):
    def latency_ms(self):
        return _timed(lambda: os.listdir(self.source.root))[1]

    def database_size(self):
        """Apparent size of the regular files under the root (like du -sb), links not followed."""
        total = 0
        unreadable = []
        for directory, _subdirs, files in os.walk(self.source.root, onerror=unreadable.append):
            for name in files:
                try:
                    info = os.lstat(os.path.join(directory, name))
                except OSError:
                    continue
                if not os.path.islink(os.path.join(directory, name)):
                    total += info.st_size
        if unreadable:
            self.notes.append("%d folder(s) could not be read; database_size leaves them out (first: %s)"
                              % (len(unreadable), unreadable[0].filename))
        self.notes.append("database_size is the apparent size of every file under source.path "
                          "(include/exclude not applied)")
        return total


class _MssqlProbe(_Probe):
    def latency_ms(self):
        client = self.source.client
        return _timed(lambda: client.run("SET NOCOUNT ON;\nSELECT 1;\n", "SELECT 1"))[1]

    def database_size(self):
        from ansible_collections.songmetrix.backup.plugins.module_utils import mssql_tsql as tsql

        sql = ("SET NOCOUNT ON;\nSELECT N'%ssize=' + CAST(CAST(SUM(CAST(size AS bigint)) * 8192 AS bigint) "
               "AS nvarchar(40)) FROM sys.master_files WHERE database_id = DB_ID(%s);\n"
               % (tsql.MARK, tsql.literal(self.source.database, "source.database")))
        found = tsql.parse_probe(self.source.client.run(sql, "reading the database size"))
        self.notes.append("database_size is the allocated size of the data and log files (sys.master_files)")
        value = found.get("size")
        return int(value) if value and value.isdigit() else None


class _MongodbProbe(_Probe):
    """mongodump has no connect-only mode: dump a collection that does not exist (nothing but the
    archive header, which names the server version), timed: connect, authenticate, one query."""

    def __init__(self, source):
        super(_MongodbProbe, self).__init__(source)
        self._version = None

    def server_version(self):
        return self._version

    def latency_ms(self):
        from ansible_collections.songmetrix.backup.plugins.module_utils.mongodb_archive import ArchiveReader
        from ansible_collections.songmetrix.backup.plugins.module_utils.mongodb_connection import ConfigFile
        from ansible_collections.songmetrix.backup.plugins.module_utils.procs import child_env
        from ansible_collections.songmetrix.backup.plugins.module_utils.source_mongodb import FAILED_RE

        src = self.source
        missing = "songmetrix-healthcheck-%s" % secrets.token_hex(4)
        with ConfigFile(src.uri, src.spool_dir) as config:
            argv = [src.tool, config.option(), "--archive", "--db=%s" % (src.database or "admin"),
                    "--collection=%s" % missing]
            if (src.options or {}).get("auth_database"):
                argv.append("--authenticationDatabase=%s" % src.options["auth_database"])
            start = time.monotonic()
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=child_env(), timeout=int(src.params.get("connect_timeout") or 30) + 30,
                                      check=False)  # the status and stderr make the error below
            except subprocess.TimeoutExpired:
                raise BackupError("mongodump did not answer within the connect timeout")
            except OSError as exc:
                raise BackupError("cannot run %s: %s" % (src.tool, exc.strerror or exc))
            millis = _millis(start)
        err = proc.stderr.decode("utf-8", errors="replace")
        failed = FAILED_RE.search(err)
        if proc.returncode != 0 or failed:
            raise BackupError("cannot connect to MongoDB: %s" % last_lines(failed.group(0) if failed else err))
        reader = ArchiveReader(until="header")
        reader.feed(proc.stdout)
        self._version = reader.server_version() if reader.header else None
        if self._version is None:
            self.notes.append("server_version unknown: the archive header named none")
        return millis

    def database_size(self):
        self.notes.append("database_size is not measured for MongoDB (it would need mongosh)")
        return None


PROBES = {
    "postgresql": _PostgresqlProbe,
    "supabase": _PostgresqlProbe,  # a PostgreSQL source with Supabase's connection presets
    "mysql": _MysqlProbe,
    "mariadb": _MysqlProbe,
    "sqlite": _SqliteProbe,
    "files": _FilesProbe,
    "mssql": _MssqlProbe,
    "mongodb": _MongodbProbe,
}


def _level(value, warning, critical):
    if value is None:
        return HEALTHY, None
    if critical is not None and value >= critical:
        return CRITICAL, critical
    if warning is not None and value >= warning:
        return WARNING, warning
    return HEALTHY, None


def check_source(params, thresholds, spool_dir=None, storage_params=None, scrub=None):
    """{status, reachable, engine, server_version, tool_version, latency_ms, database_size, msg, notes}."""
    scrub = scrub or (lambda text: text)
    result = dict(status=CRITICAL, reachable=False, engine=params.get("engine"), server_version=None,
                  tool_version=None, latency_ms=None, database_size=None, msg=None, notes=[])
    try:
        source = make_source(params, spool_dir)
        if getattr(source, "engine", None) == "mssql" and hasattr(source, "storage_params"):
            source.storage_params = storage_params  # url mode checks its S3 location against the storage
        probe = PROBES[source.engine](source)
        found = source.preflight()
        result["tool_version"] = found.get("tool_version")
        result["latency_ms"] = probe.latency_ms()
        result["reachable"] = True
        result["server_version"] = probe.server_version()
        result["database_size"] = probe.database_size()
        result["notes"].extend(probe.notes)
        result["notes"].extend(getattr(source, "warnings", None) or [])
    except (BackupError, OSError) as exc:
        text = str(exc) if isinstance(exc, BackupError) else "%s: %s" % (getattr(exc, "filename", ""), exc.strerror)
        result["msg"] = scrub(text)
        return result
    problems = []
    status = HEALTHY
    for label, value, unit, warn, crit in (
            ("latency", result["latency_ms"], "ms", thresholds.get("latency_warning_ms"),
             thresholds.get("latency_critical_ms")),
            ("database size", result["database_size"], "bytes", thresholds.get("size_warning"),
             thresholds.get("size_critical"))):
        level, limit = _level(value, warn, crit)
        if level != HEALTHY:
            problems.append("%s %s %s is at or above the %s threshold %s" % (label, value, unit, level, limit))
        status = worst(status, level)
    result["status"] = status
    result["msg"] = "; ".join(problems) if problems else "reachable, %s" % (
        result["server_version"] or result["tool_version"] or result["engine"])
    result["notes"] = [scrub(note) for note in result["notes"]]
    return result
