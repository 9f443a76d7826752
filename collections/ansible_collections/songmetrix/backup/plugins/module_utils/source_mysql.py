"""MySQL and MariaDB source: mysqldump / mariadb-dump with credentials in an inherited pipe.

The connection options, password included, are written to a pipe the child reads as
``--defaults-extra-file=/dev/fd/N``: they never appear in argv and never touch the disk.
"""

import os
import subprocess
import threading

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import (
    NonEmptyCheck,
    ProcessProducer,
    TailCheck,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import (
    Child,
    child_env,
    find_tool,
    last_lines,
    run_capture,
    secret_pipe,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.validation import no_control_chars

DUMP_TOOLS = {"mariadb": ("mariadb-dump", "mysqldump"), "mysql": ("mysqldump",)}
CLIENT_TOOLS = {"mariadb": ("mariadb", "mysql"), "mysql": ("mysql",)}
# ssl_mode (PostgreSQL's vocabulary, shared by all engines) -> option-file lines per client family.
SSL_OPTIONS = {
    "mysql": {
        "disable": ["ssl-mode=DISABLED"],
        "allow": ["ssl-mode=PREFERRED"],
        "prefer": ["ssl-mode=PREFERRED"],
        "require": ["ssl-mode=REQUIRED"],
        "verify-ca": ["ssl-mode=VERIFY_CA"],
        "verify-full": ["ssl-mode=VERIFY_IDENTITY"],
    },
    "mariadb": {
        "disable": ["skip-ssl"],
        "allow": [],
        "prefer": [],
        "require": ["ssl"],
        "verify-ca": ["ssl", "ssl-verify-server-cert"],
        "verify-full": ["ssl", "ssl-verify-server-cert"],
    },
}


def option_value(value):
    """Quote a value for a MySQL option file (backslash escapes inside double quotes)."""
    text = str(value)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"%s"' % escaped


def defaults_file(params, family):
    lines = ["[client]"]
    for key, option in (("host", "host"), ("port", "port"), ("user", "user"), ("password", "password")):
        value = params.get(key)
        if value is not None and value != "":
            lines.append("%s=%s" % (option, option_value(no_control_chars("source.%s" % key, value))))
    if params.get("ssl_mode"):
        lines.extend(SSL_OPTIONS[family][params["ssl_mode"]])
    if params.get("connect_timeout"):
        # Only the command-line client (group [mysql], read by mysql and mariadb) knows this option;
        # mysqldump / mariadb-dump stop at an unknown option in [client]. The client's preflight
        # connects first, so the timeout still bounds a run against an unreachable server.
        lines += ["[mysql]", "connect-timeout=%d" % int(params["connect_timeout"])]
    return "\n".join(lines) + "\n"


def _first_tool(names, executable):
    if executable:
        return find_tool(names[0], executable)
    for name in names[:-1]:
        try:
            return find_tool(name)
        except ValidationError:
            continue
    return find_tool(names[-1], package_hint="mariadb-client or mysql-client")


class MysqlSource(object):
    extension = "sql"

    def __init__(self, params, spool_dir, engine):
        self.engine = engine
        self.params = params
        self.database = params.get("database")
        if not self.database:
            raise ValidationError("source.database is required for engine %s" % engine)
        no_control_chars("source.database", self.database)
        if params.get("format") or params.get("jobs") or params.get("include_schemas") or params.get("exclude_schemas"):
            raise ValidationError("source.format, jobs, include_schemas and exclude_schemas are for postgresql only")
        for table in (params.get("include") or []) + (params.get("exclude") or []):
            no_control_chars("source table names", table)
            if table.startswith("-"):
                raise ValidationError("table name %r must not start with '-'" % table)
        self.dump_tool = _first_tool(DUMP_TOOLS[engine], params.get("executable"))
        sibling_names = CLIENT_TOOLS[engine]
        siblings = [os.path.join(os.path.dirname(self.dump_tool), n) for n in sibling_names]
        found = [s for s in siblings if os.access(s, os.X_OK)]
        self.client_tool = found[0] if found else _first_tool(sibling_names, None)
        self.family = None  # set by preflight() from the dump tool's --version
        self.tool_version = None
        self.server_version = None
        self.row_counts = True  # set by the dump plan (the dump module's row_counts option)
        self._counter = None

    def _where(self):
        p = self.params
        return "%s:%s/%s" % (p.get("host") or "localhost", p.get("port") or 3306, self.database)

    def _credentials_fd(self):
        """A fresh pipe with the option file; every child needs its own (a pipe is read once)."""
        return secret_pipe(defaults_file(self.params, self.family))

    def preflight(self):
        rc, out, err = run_capture("dump tool", [self.dump_tool, "--version"])
        if rc != 0:
            raise BackupError("%s --version failed: %s" % (self.dump_tool, last_lines(err or out)))
        self.tool_version = out.strip()
        # The option file dialect follows the client actually installed, not the engine's name.
        is_mariadb = "mariadb" in os.path.basename(self.dump_tool) or "mariadb" in self.tool_version.lower()
        self.family = "mariadb" if is_mariadb else "mysql"
        fd = self._credentials_fd()
        # --defaults-extra-file must come first on the command line.
        argv = [self.client_tool, "--defaults-extra-file=/dev/fd/%d" % fd, "--batch", "--skip-column-names",
                "-e", "SELECT VERSION()", "--database=%s" % self.database]
        try:
            rc, out, err = run_capture("mysql client", argv, env=child_env(), pass_fds=(fd,),
                                       timeout=int(self.params.get("connect_timeout") or 30) + 30)
        finally:
            os.close(fd)
        if rc != 0:
            raise BackupError("cannot connect to %s at %s: %s" % (self.engine, self._where(), last_lines(err or out)))
        self.server_version = out.strip()
        return {"tool_version": self.tool_version, "server_version": self.server_version}

    def argv(self):
        return self._dump_argv("N")

    def _dump_argv(self, fd):
        p = self.params
        argv = [
            self.dump_tool,
            "--defaults-extra-file=/dev/fd/%s" % fd,
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--quick",
            "--no-tablespaces",
            "--default-character-set=utf8mb4",
        ]
        for table in p.get("exclude") or []:
            argv.append("--ignore-table=%s.%s" % (self.database, table))
        argv.append("--")
        argv.append(self.database)
        argv.extend(p.get("include") or [])
        return argv

    def stream_checks(self):
        name = os.path.basename(self.dump_tool)
        return [NonEmptyCheck(name), TailCheck(b"-- Dump completed", name)]

    def open(self):
        self.close()
        tables = self._dumped_tables() if self.row_counts else None
        fd = self._credentials_fd()
        try:
            child = Child(os.path.basename(self.dump_tool), self._dump_argv(fd), env=child_env(), pass_fds=(fd,))
        finally:
            os.close(fd)
        if tables is not None:
            # Beside the dump, in a consistent snapshot of its own taken as mysqldump takes its one:
            # the same data unless a write commits between the two (see the dump module's docs).
            self._counter = _Counter(self, tables)
        return ProcessProducer(child)

    def _client(self, sql, what):
        """Run ``sql`` (on stdin, so no argv length limit) in the client; the output lines."""
        fd = self._credentials_fd()
        argv = [self.client_tool, "--defaults-extra-file=/dev/fd/%d" % fd, "--batch", "--skip-column-names",
                "--database=%s" % self.database]
        try:
            proc = subprocess.run(argv, input=sql.encode("utf-8"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=child_env(), pass_fds=(fd,), timeout=24 * 3600,
                                  check=False)  # the status and stderr make the error below
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackupError("%s failed: %s" % (what, exc))
        finally:
            os.close(fd)
        if proc.returncode != 0:
            raise BackupError("%s failed: %s" % (what, last_lines(proc.stderr.decode("utf-8", errors="replace"))))
        return proc.stdout.decode("utf-8", errors="replace").splitlines()

    def _dumped_tables(self):
        """The base tables mysqldump dumps: all of the database's, or the included ones, less the excluded."""
        lines = self._client("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                             "AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME;\n", "listing the tables to count")
        names = [_unescape_batch(line) for line in lines]
        include = self.params.get("include") or []
        exclude = set(self.params.get("exclude") or [])
        return [name for name in names if (not include or name in include) and name not in exclude]

    def _count(self, tables):
        """All counts in one session and one transaction, a few hundred tables per statement."""
        sql = ("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ;\n"
               "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY;\n")
        for start in range(0, len(tables), 500):
            sql += "\nUNION ALL ".join(
                "SELECT %d, COUNT(*) FROM %s" % (index, _quote_name(tables[index]))
                for index in range(start, min(start + 500, len(tables)))
            ) + ";\n"
        sql += "COMMIT;\n"
        counts = {}
        for line in self._client(sql, "counting the rows of the dumped tables"):
            index, dummy, count = line.partition("\t")
            counts[tables[int(index)]] = int(count)
        return counts

    def table_counts(self):
        """{"table": rows}, counted beside the dump (after the stream ended); None with row_counts off."""
        if self._counter is None:
            return None
        try:
            return self._counter.result()
        finally:
            self._counter = None

    def close(self):
        self._counter = None  # a count still running ends on its own; its result is not used


class _Counter(object):
    def __init__(self, source, tables):
        self._result = None
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(source, tables), name="mysql-row-counts")
        self._thread.daemon = True
        self._thread.start()

    def _run(self, source, tables):
        try:
            self._result = source._count(tables)  # pylint: disable=protected-access
        except BaseException as exc:  # reported by result()
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            if isinstance(self._error, BackupError):
                raise self._error
            raise BackupError("counting the rows of the dumped tables failed: %s" % self._error)
        return self._result


def _quote_name(name):
    return "`%s`" % name.replace("`", "``")


def _unescape_batch(text):
    """A value as the client prints it in --batch mode (\\t, \\n, \\\\ escaped)."""
    out = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append({"t": "\t", "n": "\n", "0": "\0", "\\": "\\"}.get(nxt, nxt))
        else:
            out.append(char)
    return "".join(out)
