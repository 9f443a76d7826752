"""Running T-SQL through sqlcmd: mssql-tools18 (ODBC) or go-sqlcmd, password in SQLCMDPASSWORD only.

The T-SQL goes into a 0600 temporary file given with ``-i`` (removed right after), so neither a
statement nor a secret it holds (the S3 key of a CREATE CREDENTIAL) is on the command line.
Both flavours take the same flags for what is used here: ``-S host,port``, ``-U``, ``-d``,
``-b`` (errors give a non-zero exit), ``-r1`` (errors to stderr), ``-x`` (no $(var) expansion
of the script), ``-l`` (login timeout), ``-N<s|m|o>`` (encryption), ``-C`` (trust the server
certificate, only when asked), ``-h -1 -W`` (plain output) and ``-i``.
"""

import re
import subprocess
import tempfile

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import child_env, find_tool, run_capture
from ansible_collections.songmetrix.backup.plugins.module_utils.private_files import (
    remove_private_file, write_private_file)
from ansible_collections.songmetrix.backup.plugins.module_utils.validation import no_control_chars

ENCRYPT_FLAGS = {"strict": "s", "mandatory": "m", "optional": "o"}
FLAVOURS = ("auto", "odbc", "go")
_MSG_RE = re.compile(r"^Msg \d+, Level \d+, State \d+")


def client_options(conn, opts):
    """The connection settings both the source and the restore target use, checked."""
    for key in ("host", "user"):
        no_control_chars("%s" % key, conn.get(key))
    flavour = opts.get("flavour") or "auto"
    if flavour not in FLAVOURS:
        raise ValidationError("mssql.flavour must be one of %s" % ", ".join(FLAVOURS))
    encrypt = opts.get("encrypt")
    if encrypt is not None and encrypt not in ENCRYPT_FLAGS:
        raise ValidationError("mssql.encrypt must be one of %s" % ", ".join(ENCRYPT_FLAGS))
    return flavour, encrypt


def sql_error(text):
    """SQL Server's messages (from the first 'Msg N, Level ...' line on), or the tool's own error lines."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if _MSG_RE.match(line) or line.startswith("Sqlcmd: Error") or line.startswith("Sqlcmd: "):
            return "\n".join(lines[index:])[-3000:]
    return "\n".join(lines[-8:])[-3000:]


class Sqlcmd(object):
    """One server connection's sqlcmd invocations."""

    def __init__(self, conn, opts, label):
        self.conn = conn
        self.opts = opts or {}
        self.label = label
        self.flavour, self.encrypt = client_options(conn, self.opts)
        self.path = find_tool("sqlcmd", conn.get("executable"),
                              package_hint="mssql-tools18 (sqlcmd) or go-sqlcmd")
        self.version = None

    def where(self):
        host = self.conn.get("host") or "localhost"
        return "%s,%s" % (host, self.conn["port"]) if self.conn.get("port") else host

    def detect(self):
        """The flavour (unless given) and the tool's version line."""
        rc, out, err = run_capture("sqlcmd", [self.path, "--version"], env=child_env())
        text = out + err
        if rc == 0 and re.search(r"Version:\s*v?\d", text):
            self.version = "go-sqlcmd " + re.search(r"Version:\s*(v?[\w.\-]+)", text).group(1)
            found = "go"
        else:
            rc, out, err = run_capture("sqlcmd", [self.path, "-?"], env=child_env())
            text = out + err
            match = re.search(r"Version\s+(\d[\w.]*)", text)
            if match is None:
                raise BackupError("%s is not a sqlcmd this module knows (neither '--version' nor '-?' named "
                                  "a version): %s" % (self.path, sql_error(text)))
            self.version = "sqlcmd " + match.group(1)
            found = "go" if "--input-file" in text or "go-sqlcmd" in text.lower() else "odbc"
        if self.flavour == "auto":
            self.flavour = found
        return self.version

    def argv(self, script="SCRIPT", database="master", separator=None):
        argv = [self.path, "-S", self.where()]
        if self.conn.get("user"):
            argv += ["-U", self.conn["user"]]
        else:
            argv.append("-E")  # integrated (Kerberos) authentication
        argv += ["-d", database, "-b", "-r1", "-x", "-h", "-1", "-W"]
        if separator:
            argv += ["-s", separator]
        if self.conn.get("connect_timeout"):
            argv += ["-l", str(int(self.conn["connect_timeout"]))]
        if self.encrypt:
            argv.append("-N" + ENCRYPT_FLAGS[self.encrypt])
        if self.opts.get("trust_server_certificate"):
            argv.append("-C")
        argv += ["-i", script]
        return argv

    def env(self):
        password = self.conn.get("password")
        if password is not None and password != "":
            no_control_chars("password", password)
            return child_env({"SQLCMDPASSWORD": password}, drop=("SQLCMDPASSWORD",))
        return child_env(drop=("SQLCMDPASSWORD",))

    def run(self, sql, what, separator=None, timeout=None):
        """Run ``sql``; its standard output, or BackupError with SQL Server's message."""
        try:
            script = write_private_file(None, "tsql", sql.encode("utf-8"), ".sql")
        except OSError as exc:
            raise BackupError("cannot write the T-SQL script for %s in %s: %s"
                              % (what, tempfile.gettempdir(), exc.strerror or exc))
        try:
            try:
                proc = subprocess.run(self.argv(script, separator=separator), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env(),
                                      timeout=timeout or 7 * 24 * 3600,
                                      check=False)  # the status and the messages make the error below
            except subprocess.TimeoutExpired:
                raise BackupError("%s on %s did not finish within %d seconds" % (what, self.where(), timeout))
            except OSError as exc:
                raise BackupError("cannot run %s: %s" % (self.path, exc.strerror or exc))
        finally:
            remove_private_file(script)
        out = proc.stdout.decode("utf-8", errors="replace")
        err = proc.stderr.decode("utf-8", errors="replace")
        if proc.returncode != 0 or _severe(err):
            raise BackupError("%s on %s failed (sqlcmd exit status %d): %s"
                              % (what, self.where(), proc.returncode, sql_error(err + "\n" + out)))
        return out


def major_version(version):
    """16 for '16.0.4135.4'; 0 when unknown."""
    try:
        return int(str(version).split(".", 1)[0])
    except ValueError:
        return 0


def _severe(text):
    """Whether stderr holds an error of severity 11 or more (sqlcmd -b exits non-zero for them anyway)."""
    for match in re.finditer(r"Msg \d+, Level (\d+)", text):
        if int(match.group(1)) > 10:
            return True
    return False
