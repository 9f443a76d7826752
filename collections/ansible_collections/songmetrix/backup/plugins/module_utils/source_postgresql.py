"""PostgreSQL source: pg_dump (custom, plain or directory format) with the password in the environment."""

import json
import os
import re
import shutil
import subprocess
import tarfile

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.private_files import create_private_dir
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import (
    HeadCheck,
    NonEmptyCheck,
    ProcessProducer,
    ThreadProducer,
    with_first_cause,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import (
    Child,
    child_env,
    find_tool,
    last_lines,
    run_capture,
)

FORMATS = {"custom": "dump", "plain": "sql", "directory": "tar"}
# `pg_restore --list` lines of tables: "<id>; <catalog oid> <oid> TABLE <schema> <name> <owner>".
TOC_TABLE_RE = re.compile(r"^\d+; (\d+) (\d+) TABLE ", re.MULTILINE)
PG_CLASS_OID = "1259"
# Exact counts of the listed tables in one statement that runs in the read-only transaction: the
# first query writes a UNION ALL of per-table count(*), which psql's \gexec runs (not query_to_xml,
# which a server built without libxml refuses). ONLY: pg_dump dumps each table's own rows.
COUNT_SQL = (
    "SELECT coalesce('SELECT coalesce(json_object_agg(name, n), ''{}'') FROM (' || "
    "string_agg(format('SELECT %%L::text AS name, count(*) AS n FROM ONLY %%I.%%I', "
    "n.nspname || '.' || c.relname, n.nspname, c.relname), ' UNION ALL ') || ') AS counts', "
    "'SELECT ''{}''') "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'r' AND c.oid = ANY('{%s}'::oid[])\n"
    "\\gexec\n"
)
# pg_dump prints these on stderr for real failures, in some cases while exiting 0.
STDERR_ERROR_RE = re.compile(r"(^|\s)(error|FATAL|PANIC):", re.MULTILINE)
VERSION_RE = re.compile(r"(\d+)(?:\.\d+)*")


def major_of(version_text):
    match = VERSION_RE.search(version_text or "")
    if not match:
        return None
    return int(match.group(1))


def _clean_tool_error(text):
    """psql/pg_dump errors without their program prefix, e.g. 'connection to server ... failed: ...'."""
    text = last_lines(text)
    return re.sub(r"^(psql|pg_dump): (error: )?", "", text, flags=re.MULTILINE)


class PostgresqlSource(object):
    engine = "postgresql"

    def __init__(self, params, spool_dir):
        self.params = params
        self.spool_dir = spool_dir
        self.database = params.get("database")
        if not self.database:
            raise ValidationError("source.database is required for engine postgresql")
        self.format = params.get("format") or "custom"
        if self.format not in FORMATS:
            raise ValidationError("source.format must be custom, plain or directory for postgresql")
        self.jobs = params.get("jobs")
        if self.jobs is not None and self.jobs != 1 and self.format != "directory":
            raise ValidationError("source.jobs needs source.format: directory (pg_dump runs in parallel only there)")
        if self.jobs is not None and self.jobs < 1:
            raise ValidationError("source.jobs must be 1 or more")
        self.pg_dump = find_tool("pg_dump", params.get("executable"), "postgresql-client")
        # psql next to the chosen pg_dump, so both come from the same client version.
        sibling = os.path.join(os.path.dirname(self.pg_dump), "psql")
        self.psql = sibling if os.access(sibling, os.X_OK) else find_tool("psql", package_hint="postgresql-client")
        self.extension = FORMATS[self.format]
        self.tool_version = None
        self.server_version = None
        self.row_counts = True  # set by the dump plan (the dump module's row_counts option)
        self._session = None

    # -- connection -------------------------------------------------------------------------
    def _env(self):
        p = self.params
        return child_env(
            {
                "PGHOST": p.get("host"),
                "PGPORT": p.get("port"),
                "PGUSER": p.get("user"),
                "PGPASSWORD": p.get("password"),
                "PGDATABASE": self.database,
                "PGSSLMODE": p.get("ssl_mode"),
                "PGCONNECT_TIMEOUT": p.get("connect_timeout"),
                "PGAPPNAME": "songmetrix-backup",
            }
        )

    def _where(self):
        p = self.params
        host = p.get("host") or "local socket"
        return "%s%s/%s" % (host, ":%s" % p["port"] if p.get("port") else "", self.database)

    def preflight(self):
        """Connect, read versions, and refuse a pg_dump older than the server."""
        rc, out, err = run_capture("pg_dump", [self.pg_dump, "--version"], env=self._env())
        if rc != 0:
            raise BackupError("pg_dump --version failed: %s" % last_lines(err or out))
        self.tool_version = out.strip()
        query = "SELECT current_setting('server_version_num') || '|' || current_setting('server_version')"
        rc, out, err = run_capture(
            "psql",
            [self.psql, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "-c", query],
            env=self._env(),
            timeout=int(self.params.get("connect_timeout") or 30) + 30,
        )
        if rc != 0:
            raise BackupError("cannot connect to PostgreSQL at %s: %s" % (self._where(), _clean_tool_error(err)))
        num, dummy, text = out.strip().partition("|")
        self.server_version = text.strip()
        server_major = int(num) // 10000 if num.isdigit() else major_of(text)
        client_major = major_of(self.tool_version)
        if client_major is not None and server_major is not None and client_major < server_major:
            raise BackupError(
                "pg_dump %s is older than the PostgreSQL server %s at %s: pg_dump must be of major version %d "
                "or newer (install postgresql-client-%d, or set source.executable)"
                % (_version_number(self.tool_version), self.server_version, self._where(), server_major, server_major)
            )
        return {"tool_version": self.tool_version, "server_version": self.server_version}

    # -- dump -------------------------------------------------------------------------------
    def connection_args(self):
        """--host/--port/--username for pg_dump and friends (the password goes through PGPASSWORD)."""
        p = self.params
        args = []
        if p.get("host"):
            args.append("--host=%s" % p["host"])
        if p.get("port"):
            args.append("--port=%s" % p["port"])
        if p.get("user"):
            args.append("--username=%s" % p["user"])
        return args

    def _argv(self, output_dir=None, snapshot=None):
        p = self.params
        argv = [self.pg_dump, "--format=%s" % self.format, "--no-password"]
        if self.format != "plain":
            argv.append("--compress=0")  # the pipeline compresses
        if snapshot:
            argv.append("--snapshot=%s" % snapshot)
        argv += self.connection_args()
        for pattern in p.get("include_schemas") or []:
            argv.append("--schema=%s" % pattern)
        for pattern in p.get("exclude_schemas") or []:
            argv.append("--exclude-schema=%s" % pattern)
        for pattern in p.get("include") or []:
            argv.append("--table=%s" % pattern)
        for pattern in p.get("exclude") or []:
            argv.append("--exclude-table=%s" % pattern)
        if output_dir:
            argv += ["--jobs=%d" % (self.jobs or 1), "--file=%s" % output_dir]
        argv.append("--dbname=%s" % self.database)
        return argv

    def argv(self):
        snapshot = "<exported snapshot>" if self.row_counts else None
        return self._argv("<spool>/dump" if self.format == "directory" else None, snapshot)

    def stream_checks(self):
        checks = [NonEmptyCheck("pg_dump")]
        if self.format == "custom":
            checks.append(HeadCheck(b"PGDMP", "pg_dump"))
        return checks

    @staticmethod
    def _stderr_failure(text):
        if STDERR_ERROR_RE.search(text):
            return "pg_dump reported an error: %s" % _clean_tool_error(text)
        return None

    def open(self):
        self.close()
        snapshot = None
        if self.row_counts:
            # Counts and dump read the same snapshot: a psql session exports it, pg_dump imports it
            # (--snapshot), and the session counts the tables pg_dump dumps, staying open until the
            # dump ended (pg_dump must import the snapshot while the exporting transaction lives).
            self._session = SnapshotSession(self.psql, self._env())
            try:
                snapshot = self._session.snapshot
                self._session.count(self._dumped_table_oids(snapshot))
            except BaseException:
                self.close()
                raise
        if self.format == "directory":
            return ThreadProducer("pg_dump directory", lambda out: self._dump_directory_as_tar(out, snapshot))
        child = Child("pg_dump", self._argv(snapshot=snapshot), env=self._env())
        return ProcessProducer(child, stderr_check=self._stderr_failure, first_cause=self._session_failure)

    def _session_failure(self):
        """Why the row-count session ended before the dump did, if it did: then pg_dump lost the
        snapshot it imports, and its own message ('invalid snapshot identifier') hides the cause."""
        return self._session.ended_early() if self._session is not None else None

    def _dumped_table_oids(self, snapshot):
        """OIDs of the tables pg_dump dumps with our options, asked of pg_dump itself.

        A schema-only dump with the same include/exclude options and the same snapshot, listed by
        pg_restore: pg_dump's own pattern matching decides, not a reimplementation of it.
        """
        argv = self._argv(snapshot=snapshot)
        argv[1] = "--format=c"
        argv.insert(2, "--schema-only")
        rc, out, err = _run_bytes(argv, self._env())
        message = (("pg_dump --schema-only exited with status %d: %s" % (rc, _clean_tool_error(err)))
                   if rc != 0 else self._stderr_failure(err))
        if message:
            raise BackupError("listing the tables to count failed: %s" % message)
        rc, listing, err = _run_bytes([self.pg_restore(), "--list"], self._env(), stdin_data=out)
        if rc != 0:
            raise BackupError("pg_restore --list of the table list failed: %s" % _clean_tool_error(err))
        oids = set()
        for catalog, oid in TOC_TABLE_RE.findall(listing.decode("utf-8", errors="replace")):
            if catalog == PG_CLASS_OID:
                oids.add(int(oid))
        return sorted(oids)

    def pg_restore(self):
        sibling = os.path.join(os.path.dirname(self.pg_dump), "pg_restore")
        return sibling if os.access(sibling, os.X_OK) else find_tool("pg_restore", package_hint="postgresql-client")

    def table_counts(self):
        """{"schema.table": rows} counted in the dump's snapshot; None with row_counts off.

        Call after the dump ended: ends the exporting transaction.
        """
        if self._session is None:
            return None
        try:
            return self._session.finish()
        finally:
            self.close()

    def close(self):
        if self._session is not None:
            self._session.kill()
            self._session = None

    def _dump_directory_as_tar(self, out, snapshot=None):
        # Directory format is the only way to run pg_dump in parallel; it cannot write to a pipe,
        # so it goes to the spool and is tarred into the stream (entries at the archive's top level).
        workdir = create_private_dir(self.spool_dir, "pg-directory-dump")
        try:
            target = os.path.join(workdir, "dump")
            child = Child("pg_dump", self._argv(target, snapshot), env=self._env(), stdout=subprocess.DEVNULL)
            rc = child.wait()
            message = child.failure(rc) or self._stderr_failure(child.stderr_text())
            if message:
                raise BackupError(with_first_cause(message, self._session_failure()))
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name in sorted(os.listdir(target)):
                    tar.add(os.path.join(target, name), arcname=name)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


class SnapshotSession(object):
    """A psql session in a REPEATABLE READ, READ ONLY transaction that exports its snapshot.

    The statements go to psql's stdin as the dump proceeds: the snapshot is exported at once, the
    count statement is sent before pg_dump starts (it runs beside the dump), and COMMIT only after
    the dump ended, so the snapshot outlives pg_dump's import of it.
    """

    def __init__(self, psql, env):
        argv = [psql, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "--no-password"]
        self.child = Child("psql (row counts)", argv, env=env, stdin=subprocess.PIPE)
        self.counting = False
        # No parallel workers for the counts: they would take the server's cores from pg_dump (and from
        # the applications) for numbers that are not urgent.
        line = self._send("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
                          "SET LOCAL max_parallel_workers_per_gather = 0;\nSELECT pg_export_snapshot();\n",
                          read_line=True)
        self.snapshot = line.strip()
        if not re.match(r"^[0-9A-Fa-f]+-[0-9A-Fa-f-]+$", self.snapshot):
            raise BackupError("exporting a snapshot for the row counts failed: %s"
                              % (self._failure() or repr(self.snapshot)))

    def _send(self, sql, read_line=False):
        try:
            self.child.stdin.write(sql.encode("utf-8"))
            self.child.stdin.flush()
        except OSError:
            raise BackupError("the row-count session ended: %s" % self._failure())
        if read_line:
            return self.child.stdout.readline().decode("utf-8", errors="replace")
        return None

    def ended_early(self):
        """psql's error when the session ended before finish() (it holds the snapshot), else None."""
        rc = self.child.proc.poll()
        if rc is None or self.child.killed:
            return None
        self.child.wait()  # the whole of stderr
        return "the row-count session (psql) ended first: %s" % (
            _clean_tool_error(self.child.stderr_text()) or "psql exited with status %d" % rc)

    def _failure(self):
        self.kill()
        self.child.wait()
        return _clean_tool_error(self.child.stderr_text()) or "psql exited"

    def count(self, oids):
        if oids:
            self._send(COUNT_SQL % ",".join(str(oid) for oid in oids))
            self.counting = True

    def finish(self):
        """Wait for the counts, end the transaction; the counts as a dict."""
        self._send("COMMIT;\n")
        self.child.stdin.close()
        out = self.child.stdout.read().decode("utf-8", errors="replace")
        rc = self.child.wait()
        if rc != 0:
            raise BackupError("counting the rows of the dumped tables failed: %s"
                              % (_clean_tool_error(self.child.stderr_text()) or "psql exited %d" % rc))
        if not self.counting:
            return {}
        try:
            counts = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BackupError("counting the rows of the dumped tables gave no result: %r" % out[-200:])
        return {str(name): int(value) for name, value in counts.items()}

    def kill(self):
        self.child.kill()
        for stream in (self.child.stdin, self.child.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


def _run_bytes(argv, env, stdin_data=None, timeout=3600):
    """Run a helper to its end: (rc, stdout bytes, stderr text)."""
    try:
        proc = subprocess.run(argv, input=stdin_data, stdin=None if stdin_data is not None else subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=timeout,
                              check=False)  # the caller reads the status
    except subprocess.TimeoutExpired:
        raise BackupError("%s did not finish within %d seconds" % (os.path.basename(argv[0]), timeout))
    except OSError as exc:
        raise BackupError("cannot run %s: %s" % (argv[0], exc.strerror or exc))
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", errors="replace")


def _version_number(version_text):
    match = VERSION_RE.search(version_text or "")
    return match.group(0) if match else version_text
