"""A real OpenSSH server for the SFTP tests: ``sshd -D -f TMP/sshd_config`` on 127.0.0.1, free port.

    with SshServer() as ssh:
        ssh.storage_params(ssh.fresh_dir())   # a storage dict for type sftp
        ssh.download("/remote/file", "/local/copy")   # the stock `sftp` client, batch mode
        ssh.drop_sessions()                   # kill every connection's sshd processes

Everything lives in a temp dir: an ed25519 host key, client keys (one plain, one with a
passphrase), authorized_keys, known_hosts and the storage root ``root``. The server is SFTP-only
(``ForceCommand internal-sftp``), like hosted storage boxes, so nothing can fall back to a shell.

Login user: when we are root, a dedicated unprivileged user ``songmetrix-sftp`` (created on first
use) with a random password, so password authentication is tested too. The password is kept in a
root-only file in /tmp and reused, so that concurrent test sessions agree on it.
Without root (or when the user cannot be created) the current user logs in with keys only and
``password`` is None.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers import LOCALHOST, ServerError, ServerUnavailable, _ManagedServer, free_port

__all__ = ["SFTP_USER", "SshServer"]

SSHD = "/usr/sbin/sshd"
SFTP_USER = "songmetrix-sftp"
START_TIMEOUT = 30.0
# Shared by every test session on this machine (whatever its TMPDIR): the test user's password, reused.
_PASSWORD_DIR = Path("/tmp")
_PASSWORD_FILE = "songmetrix-sftp-password"


def _run(argv, *, input_text=None, what=None, timeout=60) -> str:
    proc = subprocess.run(
        [str(a) for a in argv],
        input=input_text,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise ServerError(f"{what or argv[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _traversable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path.resolve(), *path.resolve().parents])


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first found, then theirs), from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _keygen(path: Path, passphrase: str = "") -> str:
    """A new ed25519 key pair at ``path``; returns the public key line (type and base64, no comment)."""
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "", "-f", path], what="ssh-keygen")
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def _shared_password() -> str:
    """The test user's password: read from a root-only file, or made and stored once (under a lock)."""
    lock_path = _PASSWORD_DIR / f"{_PASSWORD_FILE}.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = _PASSWORD_DIR / _PASSWORD_FILE
        try:
            password = path.read_text().strip()
        except FileNotFoundError:
            password = ""
        if not password:
            # Characters that need quoting in shells and config files, like the database passwords.
            password = secrets.token_urlsafe(12) + "'\"#\\ :" + secrets.token_hex(2)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(password)
        try:
            pwd.getpwnam(SFTP_USER)
        except KeyError:
            _run(["useradd", "--system", "--create-home", "--shell", "/usr/sbin/nologin", SFTP_USER], what="useradd")
        # chpasswd every time: the file may be newer than the user (or the other way round).
        _run(["chpasswd"], input_text=f"{SFTP_USER}:{password}\n", what="chpasswd")
        return password


class SshServer(_ManagedServer):
    """sshd on 127.0.0.1:<free port>, SFTP only.

    Attributes: host, port, user, password (None when password login is impossible here),
    private_key (path, no passphrase), encrypted_key + encrypted_key_passphrase, public_key_line,
    host_public_key ("ssh-ed25519 AAAA..."), host_key_line ("[127.0.0.1]:PORT ssh-ed25519 AAAA..."),
    other_host_public_key (a different key, for "changed host key" tests), known_hosts (path of a
    file holding host_key_line), home (the login directory), root (a local directory the user owns,
    for storage paths), tmp, log_file, pid.

    ``file_size_limit`` (bytes): no file on the server grows beyond it; writes past it fail like on
    a full disk.
    """

    def __init__(self, user: str | None = None, file_size_limit: int | None = None):
        if not os.access(SSHD, os.X_OK):
            raise ServerUnavailable(f"{SSHD} not found (install Debian's openssh-server: make deps)")
        for tool in ("ssh-keygen", "sftp"):
            if shutil.which(tool) is None:
                raise ServerUnavailable(f"{tool} not found (install Debian's openssh-client: make deps)")
        self.host = LOCALHOST
        self.port: int | None = None
        self._wanted_user = user
        self.file_size_limit = file_size_limit
        self.user: str | None = None
        self.password: str | None = None
        self.tmp: Path | None = None
        self.root: Path | None = None
        self.home: Path | None = None
        self.log_file: Path | None = None
        self.private_key = self.encrypted_key = self.known_hosts = None
        self.encrypted_key_passphrase = "pass phrase 'with' quotes"
        self.public_key_line = self.host_public_key = self.other_host_public_key = None
        self._proc: subprocess.Popen | None = None

    # -- properties
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running else None

    @property
    def host_key_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.host_public_key}"

    # -- setup
    def _choose_user(self) -> None:
        if self._wanted_user:
            self.user = self._wanted_user
        elif os.geteuid() == 0:
            try:
                self.password = _shared_password()
                self.user = SFTP_USER
            except ServerError:
                self.user = pwd.getpwuid(os.geteuid()).pw_name  # no useradd here: keys only
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.home = Path(pwd.getpwnam(self.user).pw_dir)

    def setup(self) -> SshServer:
        base = Path(tempfile.gettempdir())
        if os.geteuid() == 0 and not _traversable_by_others(base):
            base = Path("/tmp")  # the login user must reach the storage root and authorized_keys
        self.tmp = Path(tempfile.mkdtemp(prefix="sm-sshd-", dir=base))
        os.chmod(self.tmp, 0o711)
        self._choose_user()
        entry = pwd.getpwnam(self.user)
        self.log_file = self.tmp / "sshd.log"
        self.host_public_key = _keygen(self.tmp / "ssh_host_ed25519_key")
        self.other_host_public_key = _keygen(self.tmp / "other_host_ed25519_key")
        self.private_key = str(self.tmp / "client_ed25519")
        self.public_key_line = _keygen(Path(self.private_key))
        self.encrypted_key = str(self.tmp / "client_ed25519_encrypted")
        encrypted_public = _keygen(Path(self.encrypted_key), self.encrypted_key_passphrase)
        authorized = self.tmp / "authorized_keys"
        authorized.write_text(f"{self.public_key_line}\n{encrypted_public}\n")
        os.chmod(authorized, 0o644)
        self.root = self.tmp / "storage"
        self.root.mkdir(mode=0o750)
        os.chown(self.root, entry.pw_uid, entry.pw_gid)
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        last_error = None
        for _attempt in range(5):
            self.port = free_port()
            self._write_config()
            try:
                self.start()
                break
            except ServerError as exc:
                last_error = exc
                if "Address already in use" not in self._log_tail():
                    raise
        else:
            raise ServerError(f"sshd did not find a free port: {last_error}")
        self.known_hosts = str(self.tmp / "known_hosts")
        Path(self.known_hosts).write_text(self.host_key_line + "\n")
        return self

    def _write_config(self) -> None:
        root_login = "prohibit-password" if self.user == "root" else "no"
        (self.tmp / "sshd_config").write_text(
            "# written by tests/sshd.py\n"
            f"Port {self.port}\n"
            f"ListenAddress {self.host}\n"
            f"HostKey {self.tmp}/ssh_host_ed25519_key\n"
            f"PidFile {self.tmp}/sshd.pid\n"
            f"AuthorizedKeysFile {self.tmp}/authorized_keys\n"
            f"AllowUsers {self.user}\n"
            f"PermitRootLogin {root_login}\n"
            "UsePAM no\n"
            "PubkeyAuthentication yes\n"
            f"PasswordAuthentication {'yes' if self.password else 'no'}\n"
            "KbdInteractiveAuthentication no\n"
            "StrictModes no\n"
            "Subsystem sftp internal-sftp\n"
            "ForceCommand internal-sftp\n"
            "AllowTcpForwarding no\n"
            "X11Forwarding no\n"
            "MaxStartups 100:30:200\n"
            "LogLevel VERBOSE\n"
        )

    # -- lifecycle
    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self) -> None:
        if self.running:
            return
        config = self.tmp / "sshd_config"
        _run([SSHD, "-t", "-f", config], what="sshd -t")
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=self._limits,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                raise ServerError(f"sshd exited at start:\n{self._log_tail()}")
            if self._banner_ok():
                return
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"sshd did not answer on {self.host}:{self.port} in {START_TIMEOUT}s:\n{self._log_tail()}")

    def _limits(self) -> None:
        """In the sshd child before exec: the file size limit (lowering needs no privilege)."""
        if self.file_size_limit is not None:
            # SIGXFSZ ignored: a write beyond the limit fails with EFBIG, which sftp-server reports as
            # an SFTP failure, like a full disk, instead of killing the session.
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_size_limit, self.file_size_limit))

    def _banner_ok(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                return sock.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False

    def sessions(self) -> list[int]:
        """PIDs of the per-connection sshd processes (all descendants of the listener)."""
        return _descendants(self._proc.pid) if self.running else []

    def drop_sessions(self) -> int:
        """Kill every connection's processes at once (SIGKILL), like a crashed or rebooted server.

        The listener keeps running, so new connections work. Returns how many processes died.
        """
        victims = self.sessions()
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(victims)

    def wait_for_session(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.sessions():
            if time.monotonic() > deadline:
                raise ServerError("no SSH session appeared")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop listening and drop every session (port stays reserved for start())."""
        if self._proc is None:
            return
        self.drop_sessions()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def cleanup(self) -> None:
        self.stop()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers for tests
    def fresh_dir(self, name: str | None = None) -> str:
        """An absolute path under ``root`` that does not exist yet (the storage creates it)."""
        return str(self.root / (name or f"t-{secrets.token_hex(4)}") / "backups")

    def storage_params(self, path: str, **overrides) -> dict:
        """A ``storage`` dict for type sftp with key authentication and this server's known_hosts."""
        params = {
            "type": "sftp",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "private_key": self.private_key,
            "known_hosts": self.known_hosts,
            "path": path,
        }
        params.update(overrides)
        return params

    def sftp_cli(self, commands: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the stock OpenSSH ``sftp`` client in batch mode (strict host key checking, our key)."""
        argv = [
            "sftp", "-q", "-b", "-", "-P", str(self.port), "-i", self.private_key,
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            f"{self.user}@{self.host}",
        ]
        return subprocess.run(
            argv, input="\n".join(commands) + "\n", capture_output=True, text=True, timeout=timeout, check=False
        )

    def download(self, remote_path: str, local_path: str | os.PathLike) -> None:
        """Fetch one file with the stock ``sftp`` client; raises ServerError when it fails."""
        proc = self.sftp_cli([f'get "{remote_path}" "{local_path}"'])
        if proc.returncode != 0:
            raise ServerError(f"sftp get {remote_path} failed: {proc.stderr.strip()}")
