"""Real database servers for the tests, on 127.0.0.1, free ports, temp dirs.

Each server is a plain object (no pytest dependency) so the benchmark can use it too:

    with PostgresServer() as pg:
        pg.psql("CREATE TABLE t (i int)")
        pg.conn_params()  # {"host": "127.0.0.1", "port": ..., "user": "backup_admin", "password": ...}

    with MariaDBServer() as my:
        my.sql("SELECT 1")

PostgreSQL: Debian's postgresql package (initdb/pg_ctl under /usr/lib/postgresql/<ver>/bin),
run as the ``postgres`` OS user when we are root. MariaDB: Debian's mariadb-server
(mariadb-install-db + mariadbd --no-defaults). The login role ``backup_admin`` gets a random
password that deliberately contains characters that need escaping in connection strings,
.pgpass files and MySQL option files (quote, double quote, backslash, ``#``, ``:``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = [
    "MariaDBServer",
    "PostgresServer",
    "ServerError",
    "ServerUnavailable",
    "free_port",
    "other_pg_bin_dir",
    "pg_bin_dir",
]

LOCALHOST = "127.0.0.1"
ADMIN_USER = "backup_admin"
# Appended to a random token: each of these breaks naive quoting somewhere
# (SQL literals, libpq conninfo and .pgpass, my.cnf option files, shell strings).
PG_PASSWORD_SPECIALS = "'\":\\#"
MARIADB_PASSWORD_SPECIALS = "'\"#\\;"
START_TIMEOUT = 90.0


class ServerError(RuntimeError):
    """A server failed to start, stop, or run a statement."""


class ServerUnavailable(ServerError):
    """The server software is not installed on this machine."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers retry on a lost race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def _random_password(specials: str) -> str:
    return secrets.token_urlsafe(12) + specials + secrets.token_hex(2)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _run(argv, *, input=None, env=None, timeout=120, cwd=None, what=None) -> str:
    """Run argv, return stdout; raise ServerError with stdout/stderr on failure."""
    try:
        proc = subprocess.run(
            argv,
            input=input,
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{what or argv[0]}: timed out after {timeout}s") from exc
    if proc.returncode != 0:
        raise ServerError(
            f"{what or ' '.join(map(str, argv))} failed with exit code {proc.returncode}\n"
            f"stdout:\n{proc.stdout.strip()}\nstderr:\n{proc.stderr.strip()}"
        )
    return proc.stdout


def _is_root() -> bool:
    return os.geteuid() == 0


def _traversable_by_others(path: Path) -> bool:
    """True when every directory from / down to path lets other users pass (o+x)."""
    path = path.resolve()
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


# --------------------------------------------------------------------------- PostgreSQL


def pg_bin_dir() -> Path:
    """The bin dir of the newest PostgreSQL server installed from Debian's packages."""
    override = os.environ.get("SONGMETRIX_PG_BIN_DIR")
    candidates = [Path(override)] if override else []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versioned = []
        for d in root.iterdir():
            if (d / "bin" / "initdb").exists():
                with contextlib.suppress(ValueError):
                    versioned.append((float(d.name), d / "bin"))
        candidates += [p for _, p in sorted(versioned, reverse=True)]
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise ServerUnavailable(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
        "(install Debian's postgresql package: make deps)"
    )


def missing_server(exc):
    """A server's software is missing: skip the test where that is allowed, else fail it.

    Skipping needs SONGMETRIX_SKIP_MISSING_SERVERS=1 and is never allowed in CI (CI=true).
    """
    import pytest

    if os.environ.get("SONGMETRIX_SKIP_MISSING_SERVERS") == "1" and os.environ.get("CI") != "true":
        pytest.skip(str(exc))
    raise exc


def started_server(cls):
    """A test server of ``cls`` set up and running (missing software: see missing_server)."""
    try:
        server = cls()
    except ServerUnavailable as exc:
        missing_server(exc)
    try:
        server.setup()
    except BaseException:
        server.cleanup()
        raise
    return server


class _ManagedServer:
    """What both servers share: use as a context manager (setup/cleanup), connection parameters."""

    def __enter__(self):
        try:
            return self.setup()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def conn_params(self) -> dict:
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password}


OTHER_PG_VERSION = "16.2"


def other_pg_bin_dir() -> Path:
    """The bin dir of a second PostgreSQL major (16, beside Debian's 15) for version-skew tests.

    scripts/fetch-postgresql-other.sh (run by `make deps`) unpacks it from PyPI's pgserver wheel into
    ${SONGMETRIX_CACHE:-~/.cache/songmetrix-backup}/postgresql-16.2.
    """
    cache = Path(os.environ.get("SONGMETRIX_CACHE") or Path.home() / ".cache" / "songmetrix-backup")
    bin_dir = cache / f"postgresql-{OTHER_PG_VERSION}" / "pgserver" / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise ServerUnavailable(
            f"PostgreSQL {OTHER_PG_VERSION} binaries not found in {bin_dir} (make deps, or "
            "scripts/fetch-postgresql-other.sh, fetches them)")
    return bin_dir


class PostgresServer(_ManagedServer):
    """A throwaway PostgreSQL cluster listening on 127.0.0.1:<free port>.

    ``bin_dir``: the server's binaries (default: Debian's newest, pg_bin_dir()).
    """

    def __init__(self, *, fast: bool = True, base_dir: str | os.PathLike | None = None,
                 bin_dir: Path | None = None):
        self.bin_dir = bin_dir or pg_bin_dir()
        self.host = LOCALHOST
        self.port: int | None = None
        self.user = ADMIN_USER
        self.password = _random_password(PG_PASSWORD_SPECIALS)
        self.version: str | None = None
        self.fast = fast
        self._base_dir = base_dir
        self.tmp: Path | None = None
        self.data_dir: Path | None = None
        self.log_file: Path | None = None
        self.socket_dir: Path | None = None
        self._running = False
        self._os_user = None
        if _is_root():
            try:
                self._os_user = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ServerUnavailable("OS user 'postgres' missing (install Debian's postgresql package)") from exc

    # -- helpers
    def _as_owner(self, argv):
        argv = [str(a) for a in argv]
        if self._os_user is not None:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _client_env(self, password: str | None = None) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = self.password if password is None else password
        env["PGCONNECT_TIMEOUT"] = "10"
        return env

    # -- lifecycle
    def setup(self) -> PostgresServer:
        base = self._base_dir
        if base is None and self._os_user is not None and not _traversable_by_others(Path(tempfile.gettempdir())):
            base = "/tmp"  # the postgres OS user must reach its data dir; a private TMPDIR would not do
        self.tmp = Path(tempfile.mkdtemp(prefix="sm-pg-", dir=base))
        self.data_dir = self.tmp / "data"
        self.socket_dir = self.tmp
        self.log_file = self.tmp / "server.log"
        if self._os_user is not None:
            os.chown(self.tmp, self._os_user.pw_uid, self._os_user.pw_gid)
        os.chmod(self.tmp, 0o700)
        if self._os_user is not None and not _traversable_by_others(self.bin_dir):
            self.bin_dir = self._copy_install()
        initdb = [
            self.bin_dir / "initdb",
            "-D", self.data_dir,
            "-U", "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ]
        if self.fast:
            initdb.append("--no-sync")
        _run(self._as_owner(initdb), cwd=self.tmp, timeout=180, what="initdb")
        # Client authentication: the superuser 'postgres' over the private socket dir (0700, so
        # only root and postgres can reach it) for bootstrapping; every TCP login needs a password.
        (self.data_dir / "pg_hba.conf").write_text(
            "# written by tests/servers.py\n"
            "local   all   postgres                 trust\n"
            "local   all   all                      scram-sha-256\n"
            "host    all   all      127.0.0.1/32    scram-sha-256\n"
            "host    all   all      ::1/128         scram-sha-256\n"
        )
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write("\n# tests/servers.py\ninclude_if_exists = 'songmetrix_test.conf'\n")
        last_error = None
        for _attempt in range(5):
            self.port = free_port()
            self._write_conf()
            try:
                self.start()
                break
            except ServerError as exc:
                last_error = exc
                if "already in use" not in _tail(self.log_file, 80):
                    raise
        else:
            raise ServerError(f"PostgreSQL did not find a free port: {last_error}")
        # The login role the tests (and the module under test) use, over TCP with a password.
        literal = self.password.replace("'", "''")
        self._admin_sql(
            f"SET password_encryption = 'scram-sha-256';\n"
            f"CREATE ROLE {ADMIN_USER} LOGIN SUPERUSER PASSWORD '{literal}';\n"
        )
        out = self.psql("SHOW server_version")
        m = re.match(r"\d+(?:\.\d+)*", out.strip())
        self.version = m.group(0) if m else out.strip()
        return self

    def _copy_install(self) -> Path:
        """A copy of a relocatable install (bin/ two levels below its root, as in the pgserver wheel)
        inside our temp dir, for the postgres OS user, who cannot reach a private home (~root/.cache)."""
        root = self.bin_dir.parents[2]
        copy = self.tmp / "install"
        shutil.copytree(root, copy, symlinks=True)
        for path in [copy, *copy.rglob("*")]:  # a+rX, whatever the umask was at unpacking
            if not path.is_symlink():
                os.chmod(path, os.stat(path).st_mode | (0o555 if path.is_dir() else 0o444))
        return copy / self.bin_dir.relative_to(root)

    def _write_conf(self):
        settings = {
            "listen_addresses": f"'{LOCALHOST}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "50",
            "shared_buffers": "128MB",
            "logging_collector": "off",
            "log_min_messages": "warning",
            "max_wal_size": "1GB",
        }
        if self.fast:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        text = "".join(f"{k} = {v}\n" for k, v in settings.items())
        path = self.data_dir / "songmetrix_test.conf"
        path.write_text(text)
        if self._os_user is not None:
            os.chown(path, self._os_user.pw_uid, self._os_user.pw_gid)

    def start(self) -> None:
        if self._running:
            return
        try:
            _run(
                self._as_owner([self.bin_dir / "pg_ctl", "-D", self.data_dir, "-l", self.log_file,
                                "-w", "-t", str(int(START_TIMEOUT)), "start"]),
                cwd=self.tmp,
                timeout=START_TIMEOUT + 30,
                what="pg_ctl start",
            )
        except ServerError as exc:
            raise ServerError(f"{exc}\n--- server log tail ({self.log_file}) ---\n{_tail(self.log_file)}") from exc
        self._wait_ready()
        self._running = True

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            proc = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", self.host, "-p", str(self.port), "-t", "2"],
                capture_output=True, text=True, check=False,
            )
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"PostgreSQL on {self.host}:{self.port} not ready after {START_TIMEOUT:.0f}s: "
                    f"{proc.stdout.strip()}\n--- server log tail ---\n{_tail(self.log_file)}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        if not self._running:
            return
        _run(
            self._as_owner([self.bin_dir / "pg_ctl", "-D", self.data_dir, "-m", "fast", "-w", "-t", "60", "stop"]),
            cwd=self.tmp,
            timeout=90,
            what="pg_ctl stop",
        )
        self._running = False

    def cleanup(self) -> None:
        try:
            if self._running:
                try:
                    self.stop()
                except ServerError:
                    self._kill()
        finally:
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None

    def _kill(self) -> None:
        pid_file = self.data_dir / "postmaster.pid" if self.data_dir else None
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    # -- client side
    def tool(self, name: str) -> str:
        """Absolute path of a client tool of this server's version (pg_dump, pg_restore, psql...)."""
        return str(self.bin_dir / name)

    def client_env(self, password: str | None = None) -> dict:
        """Environment for running client tools against this server (PGPASSWORD set)."""
        return self._client_env(password)

    def psql(self, sql: str, dbname: str = "postgres", *, user: str | None = None,
             password: str | None = None, timeout: float = 300) -> str:
        """Run SQL over TCP as backup_admin; return unaligned, tuples-only output. Raises ServerError."""
        argv = [
            self.tool("psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", self.host, "-p", str(self.port), "-U", user or self.user, "-d", dbname, "-f", "-",
        ]
        out = _run(argv, input=sql, env=self._client_env(password), timeout=timeout, what=f"psql ({dbname})")
        return out.rstrip("\n")

    def _admin_sql(self, sql: str, dbname: str = "postgres") -> str:
        argv = self._as_owner([
            self.bin_dir / "psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", self.socket_dir, "-p", str(self.port), "-U", "postgres", "-d", dbname, "-f", "-",
        ])
        return _run(argv, input=sql, env=self._client_env(""), cwd=self.tmp, what="psql (admin)").rstrip("\n")

    @staticmethod
    def quote_ident(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def create_database(self, name: str) -> str:
        self.psql(f"CREATE DATABASE {self.quote_ident(name)}")
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {self.quote_ident(name)} WITH (FORCE)")


# --------------------------------------------------------------------------- MariaDB


def _which(name: str, *fallbacks: str) -> str:
    for n in (name, *fallbacks):
        path = shutil.which(n) or shutil.which(n, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if path:
            return path
    raise ServerUnavailable(f"{name} not found (install Debian's mariadb-server and mariadb-client: make deps)")


class MariaDBServer(_ManagedServer):
    """A throwaway MariaDB server on 127.0.0.1:<free port> with its socket in a temp dir."""

    def __init__(self, *, fast: bool = True, base_dir: str | os.PathLike | None = None):
        self.mariadbd = _which("mariadbd", "mysqld")
        self.install_db = _which("mariadb-install-db", "mysql_install_db")
        self.client = _which("mariadb", "mysql")
        self.admin = _which("mariadb-admin", "mysqladmin")
        self.host = LOCALHOST
        self.port: int | None = None
        self.user = ADMIN_USER
        self.password = _random_password(MARIADB_PASSWORD_SPECIALS)
        self.version: str | None = None
        self.fast = fast
        self._base_dir = base_dir
        self.tmp: Path | None = None
        self.data_dir: Path | None = None
        self.socket: str | None = None
        self.log_file: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._os_user = "root" if _is_root() else pwd.getpwuid(os.geteuid()).pw_name

    def setup(self) -> MariaDBServer:
        self.tmp = Path(tempfile.mkdtemp(prefix="sm-mariadb-", dir=self._base_dir))
        self.data_dir = self.tmp / "data"
        self.socket = str(self.tmp / "s")
        self.log_file = self.tmp / "server.log"
        _run(
            [
                self.install_db, "--no-defaults",
                f"--datadir={self.data_dir}",
                f"--user={self._os_user}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ],
            cwd=self.tmp, timeout=300, what="mariadb-install-db",
        )
        last_error = None
        for _attempt in range(5):
            self.port = free_port()
            try:
                self.start()
                break
            except ServerError as exc:
                last_error = exc
                if "Address already in use" not in _tail(self.log_file, 80):
                    raise
        else:
            raise ServerError(f"MariaDB did not find a free port: {last_error}")
        pw = self.sql_literal(self.password)
        stmts = []
        for host in ("127.0.0.1", "localhost"):
            stmts.append(f"CREATE USER '{ADMIN_USER}'@'{host}' IDENTIFIED BY {pw};")
            stmts.append(f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'{host}' WITH GRANT OPTION;")
        stmts.append("FLUSH PRIVILEGES;")
        self.sql("\n".join(stmts))
        self.version = self.sql("SELECT VERSION()").strip()
        return self

    def _argv(self) -> list:
        argv = [
            self.mariadbd, "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--user={self._os_user}",
            f"--pid-file={self.tmp / 'mariadbd.pid'}",
            f"--log-error={self.log_file}",
            f"--tmpdir={self.tmp}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=128M",
            "--max-connections=100",
        ]
        if self.fast:
            argv += ["--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--sync-binlog=0"]
        return argv

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        log = open(self.log_file, "ab")  # handed to the child, closed below
        try:
            self._proc = subprocess.Popen(
                self._argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=self.tmp, start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise ServerError(
                    f"mariadbd exited with code {self._proc.returncode} during start-up\n"
                    f"--- server log tail ({self.log_file}) ---\n{_tail(self.log_file)}"
                )
            ping = subprocess.run(
                [self.admin, "--no-defaults", "-S", self.socket, "-uroot", "--connect-timeout=2", "ping"],
                capture_output=True, text=True, check=False,
            )
            if ping.returncode == 0 and self._tcp_open():
                return
            if time.monotonic() > deadline:
                self._terminate()
                raise ServerError(
                    f"MariaDB on {self.host}:{self.port} not ready after {START_TIMEOUT:.0f}s: "
                    f"{ping.stderr.strip()}\n--- server log tail ---\n{_tail(self.log_file)}"
                )
            time.sleep(0.2)

    def _tcp_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = None
            return
        with contextlib.suppress(ServerError):
            _run([self.admin, "--no-defaults", "-S", self.socket, "-uroot", "shutdown"],
                 timeout=60, what="mariadb-admin shutdown")
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._terminate()
        self._proc = None

    def _terminate(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.terminate()
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            self._proc.wait(timeout=20)

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            self._terminate()
            self._proc = None
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- client side
    @staticmethod
    def sql_literal(value: str) -> str:
        """A MariaDB string literal (default sql_mode: backslash escapes are active)."""
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    @staticmethod
    def quote_ident(name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def sql(self, sql: str, database: str | None = None, *, timeout: float = 300) -> str:
        """Run SQL as root over the socket; return batch output (tab-separated, no column names)."""
        argv = [self.client, "--no-defaults", "-S", self.socket, "-uroot", "-N", "-B"]
        if database:
            argv.append(database)
        return _run(argv, input=sql, timeout=timeout, what="mariadb").rstrip("\n")

    def create_database(self, name: str) -> str:
        self.sql(f"CREATE DATABASE {self.quote_ident(name)}")
        return name

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {self.quote_ident(name)}")
