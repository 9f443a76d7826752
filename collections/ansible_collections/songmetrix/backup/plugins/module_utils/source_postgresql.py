"""PostgreSQL source: pg_dump (custom, plain or directory format) with the password in the environment."""

import os
import re
import shutil
import subprocess
import tarfile
import tempfile

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import (
    HeadCheck,
    NonEmptyCheck,
    ProcessProducer,
    ThreadProducer,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import (
    Child,
    child_env,
    find_tool,
    last_lines,
    run_capture,
)

FORMATS = {"custom": "dump", "plain": "sql", "directory": "tar"}
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
    def _argv(self, output_dir=None):
        p = self.params
        argv = [self.pg_dump, "--format=%s" % self.format, "--no-password"]
        if self.format != "plain":
            argv.append("--compress=0")  # the pipeline compresses
        if p.get("host"):
            argv.append("--host=%s" % p["host"])
        if p.get("port"):
            argv.append("--port=%s" % p["port"])
        if p.get("user"):
            argv.append("--username=%s" % p["user"])
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
        return self._argv("<spool>/dump" if self.format == "directory" else None)

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
        if self.format == "directory":
            return ThreadProducer("pg_dump directory", self._dump_directory_as_tar)
        child = Child("pg_dump", self._argv(), env=self._env())
        return ProcessProducer(child, stderr_check=self._stderr_failure)

    def _dump_directory_as_tar(self, out):
        # Directory format is the only way to run pg_dump in parallel; it cannot write to a pipe,
        # so it goes to the spool and is tarred into the stream (entries at the archive's top level).
        workdir = tempfile.mkdtemp(prefix="songmetrix-pgdir-", dir=self.spool_dir)
        try:
            target = os.path.join(workdir, "dump")
            child = Child("pg_dump", self._argv(target), env=self._env(), stdout=subprocess.DEVNULL)
            rc = child.wait()
            message = child.failure(rc) or self._stderr_failure(child.stderr_text())
            if message:
                raise BackupError(message)
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name in sorted(os.listdir(target)):
                    tar.add(os.path.join(target, name), arcname=name)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _version_number(version_text):
    match = VERSION_RE.search(version_text or "")
    return match.group(0) if match else version_text
