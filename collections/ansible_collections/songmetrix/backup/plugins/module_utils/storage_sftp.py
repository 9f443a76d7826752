"""SFTP storage over SSH with paramiko (storage.type sftp); the contract is in storage.py.

Why paramiko: a maintained, pure-Python SSH and SFTP client (Ansible itself uses it) that checks
host keys against known_hosts, logs in with a password without sshpass, and speaks plain SFTP, so
it works with SFTP-only servers (internal-sftp, chroots, hosted storage boxes) where
``ssh host 'cat > file'`` cannot run.

An artifact is written under a hidden temporary name in its final directory
(``.<name>.partial-<pid>-<random>``, mode 0600) and renamed into place by commit(). The plain SFTP
rename is used on purpose: OpenSSH's sftp-server implements it with link() and unlink(), so it
never replaces an existing file (the posix-rename@openssh.com extension would; replace_small uses it
for status objects, which must be overwritten). Writes are
pipelined: many write requests are in flight, and every answer is checked before commit().
SFTP has no place for object metadata: ``metadata`` is accepted and not stored (the manifest has it).
"""

import binascii
import errno
import getpass
import hashlib
import inspect
import logging
import os
import posixpath
import random
import socket
import stat
import sys
import time
import traceback

try:
    import paramiko
    from paramiko.hostkeys import HostKeyEntry, InvalidHostKey
    from paramiko.sftp import (
        CMD_DATA,
        CMD_EXTENDED,
        CMD_READ,
        CMD_REMOVE,
        CMD_STATUS,
        CMD_WRITE,
        SFTP_EOF,
        SFTP_NO_SUCH_FILE,
        SFTP_OK,
    )

    try:
        from paramiko.sftp import int64  # marks 64-bit integers in requests
    except ImportError:  # paramiko < 3 (Debian 12, Ubuntu 22.04) calls it long
        from paramiko.py3compat import long as int64
except ImportError:
    paramiko = None
    HAS_PARAMIKO = False
    PARAMIKO_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_PARAMIKO = True
    PARAMIKO_IMPORT_ERROR = None

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, StorageError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import (
    ObjectInfo,
    read_whole,
    remove_emptied_folders,
)

DEFAULT_PORT = 22
DEFAULT_RETRIES = 3
DEFAULT_TIMEOUT = 60
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
FILE_MODE = 0o600
DIR_MODE = 0o750
# 32 KiB is the request size every SFTP server must accept; 64 requests in flight (2 MiB, the
# window OpenSSH grants a channel) keep the link busy. paramiko's cost is per SSH packet (MAC,
# cipher call, locks), so a write request is cut to fit one packet with its header (measured on
# loopback: about 20% faster than 32 KiB requests that each spill a few bytes into a second packet;
# larger requests were no faster).
REQUEST_SIZE = 32768
# paramiko sends at most (max packet - 64) bytes per packet; an SSH_FXP_WRITE carries 25 bytes + the handle.
_PACKET_RESERVE = 64
_WRITE_HEADER = 25
WRITES_IN_FLIGHT = 64
READS_IN_FLIGHT = 64
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0
KEEPALIVE_SECONDS = 30
_TRANSIENT_ERRNOS = frozenset(
    (errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE,
     errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN)
)
_KEY_TYPE_PREFIXES = ("ssh-", "ecdsa-", "sk-", "rsa-")


def fingerprint(key):
    """OpenSSH's SHA256 fingerprint of a public key, as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + binascii.b2a_base64(digest).decode("ascii").strip().rstrip("=")


def describe_key(key):
    return "%s %s" % (key.get_name(), fingerprint(key))


def parse_host_key(text):
    """A public key from ``ssh-ed25519 AAAA...`` (host names in front, as in known_hosts, are skipped)."""
    fields = (text or "").split()
    while fields and not fields[0].startswith(_KEY_TYPE_PREFIXES):
        fields.pop(0)
    entry = None
    if len(fields) >= 2:
        try:
            entry = HostKeyEntry.from_line("host %s %s" % (fields[0], fields[1]))
        except (InvalidHostKey, paramiko.SSHException, ValueError, binascii.Error):
            entry = None
    if entry is None or entry.key is None:
        raise ValidationError(
            "storage.host_key must be a public key like 'ssh-ed25519 AAAA...' "
            "(the line ssh-keyscan prints, without the host name)"
        )
    return entry.key


def remote_root(path):
    """The base directory as the server sees it: absolute, or relative to the login directory ('')."""
    path = (path or "").strip()
    if not path:
        raise ValidationError("storage.path is required for storage.type sftp")
    if "\0" in path:
        raise ValidationError("storage.path must not contain NUL characters")
    if path == "~" or path.startswith("~/"):
        path = path[1:].lstrip("/") or "."  # SFTP does not expand ~; relative paths start there anyway
    path = posixpath.normpath(path)
    return "" if path == "." else path


def _connection_cause(exc):
    """What went wrong with a connection, for people; paramiko's texts carry no secrets."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return "connection refused"
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, EOFError):
        return "connection closed by the server"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def _is_transient(exc):
    """Worth another try: the network or the server may recover. Never authentication or host keys."""
    if isinstance(exc, (paramiko.AuthenticationException, paramiko.BadHostKeyException, _UnknownHostKey)):
        return False
    if isinstance(exc, socket.gaierror):
        return exc.errno == socket.EAI_AGAIN
    if isinstance(exc, (EOFError, socket.timeout, ConnectionError, paramiko.ssh_exception.NoValidConnectionsError)):
        return True
    if isinstance(exc, paramiko.SSHException):
        return "ncompatible" not in str(exc)  # no common algorithms stays so
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


def _status_text(msg):
    """(code, text) of an SSH_FXP_STATUS answer."""
    code = msg.get_int()
    return code, msg.get_text() or "SFTP status %d" % code


class _UnknownHostKey(Exception):
    def __init__(self, key):
        super(_UnknownHostKey, self).__init__("unknown host key")
        self.key = key


class _RefuseUnknownKey(object):
    """paramiko's missing-host-key hook: refuse, naming the key, so that the error can say what to check."""

    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(key)


class _AcceptAnyKey(object):
    """host_key_checking=false: accept the key and, unlike paramiko's AutoAddPolicy, write it nowhere."""

    def missing_host_key(self, client, hostname, key):
        return None


class _ConnectionLost(StorageError):
    """The SSH connection died during a transfer (the transfer cannot resume, a new one may work)."""


class _Answers(object):
    """Collects the answers to pipelined requests; paramiko hands each answer to _async_response()."""

    def __init__(self):
        self.outstanding = 0
        self.failure = None

    def _async_response(self, kind, msg, num):
        self.outstanding -= 1
        if kind != CMD_STATUS:
            self.failure = self.failure or "unexpected answer type %d" % kind
            return
        code, text = _status_text(msg)
        if code != SFTP_OK and self.failure is None:
            self.failure = text


class _Removes(object):
    """Answers to pipelined remove requests: (key, the server's text) for each refused one; missing is fine."""

    def __init__(self):
        self.pending = {}  # request number -> key
        self.answered = 0
        self.failures = []

    def _async_response(self, kind, msg, num):
        key = self.pending.pop(num)
        self.answered += 1
        code, text = _status_text(msg) if kind == CMD_STATUS else (None, "unexpected answer type %d" % kind)
        if code not in (SFTP_OK, SFTP_NO_SUCH_FILE):
            self.failures.append((key, text))


class SftpWriter(object):
    """One artifact: pipelined writes to a hidden temp file; commit() renames it into place."""

    def __init__(self, storage, sftp, path):
        self._storage = storage
        self._sftp = sftp
        self.path = path
        directory, name = posixpath.split(path)
        self.temp_path = posixpath.join(directory, ".%s.partial-%d-%s" % (name, os.getpid(), _token()))
        self.written = 0
        self._done = False
        self._answers = _Answers()
        # "x": O_EXCL, never someone else's file. The mode is set before any byte is written.
        self._file = sftp.open(self.temp_path, "wx", 0)
        self._file.chmod(FILE_MODE)
        room = sftp.get_channel().out_max_packet_size - _PACKET_RESERVE - _WRITE_HEADER - len(self._file.handle)
        self._request_size = max(1024, min(REQUEST_SIZE, room))

    def write(self, data):
        view = memoryview(data).cast("B")
        try:
            for start in range(0, len(view), self._request_size):
                self._wait(WRITES_IN_FLIGHT - 1)
                piece = view[start:start + self._request_size]
                self._sftp._async_request(self._answers, CMD_WRITE, self._file.handle, int64(self.written), piece)
                self._answers.outstanding += 1
                self.written += len(piece)
        except (EOFError, OSError, paramiko.SSHException) as exc:
            raise self._storage.transfer_error(self.path, exc)

    def _wait(self, limit):
        """Read answers until at most ``limit`` requests are in flight; a refused write fails here."""
        while self._answers.outstanding > limit:
            self._sftp._read_response()
        if self._answers.failure is not None:
            raise StorageError(
                "writing %s failed: %s" % (self._storage.location_of(self.temp_path), self._answers.failure)
            )

    def _fsync(self):
        """Ask the server to fsync (OpenSSH's fsync@openssh.com) before the rename.

        Best effort: paramiko does not tell which extensions a server has, and servers without this
        one answer "unsupported" or, some of them, "failure". The size check in commit() follows.
        """
        answers = _Answers()
        self._sftp._async_request(answers, CMD_EXTENDED, "fsync@openssh.com", self._file.handle)
        answers.outstanding += 1
        while answers.outstanding:
            self._sftp._read_response()

    def commit(self, replace=False):
        """Rename the temp file into place; ``replace`` (status objects only) may take an existing one's place."""
        if self._done:
            raise StorageError("%s was already committed or aborted" % self._storage.location_of(self.path))
        try:
            self._wait(0)
            self._fsync()
            self._file.close()
            size = self._sftp.stat(self.temp_path).st_size
            if size != self.written:
                raise StorageError(
                    "%s holds %d bytes after the upload, %d were sent"
                    % (self._storage.location_of(self.temp_path), size, self.written)
                )
            rename = self._storage.rename_over if replace else self._storage.rename_new
            rename(self._sftp, self.temp_path, self.path)
        except BackupError:
            self.abort()
            raise
        except (EOFError, OSError, paramiko.SSHException) as exc:
            self.abort()
            raise self._storage.transfer_error(self.path, exc)
        self._done = True

    def abort(self):
        """Close and remove the temp file (reconnecting if the connection died); never raises."""
        if self._done:
            return
        self._done = True
        try:
            self._file.close()
        except Exception:  # the connection may be gone; removal below reconnects
            pass
        self._storage.remove_quietly(self.temp_path)


class SftpReader(object):
    """A stored object read with many requests in flight (answers may come in any order)."""

    def __init__(self, storage, sftp, path, size):
        self._storage = storage
        self._sftp = sftp
        self.path = path
        self.size = size
        self._file = sftp.open(path, "r", 0)
        self._pos = 0
        self._chunks = {}  # offset -> bytes that arrived
        self._wanted = []  # (offset, length) still to ask for, e.g. the rest of a short read
        self._asked = {}  # request number -> (offset, length)
        self._next = 0  # first offset not yet asked for
        self._end = size  # lowered when the server says EOF early
        self._failure = None

    def _async_response(self, kind, msg, num):
        offset, length = self._asked.pop(num)
        if kind == CMD_DATA:
            data = msg.get_binary()
            self._chunks[offset] = data
            if 0 < len(data) < length:
                self._wanted.append((offset + len(data), length - len(data)))
            elif not data:
                self._end = min(self._end, offset)
        elif kind == CMD_STATUS:
            code, text = _status_text(msg)
            if code == SFTP_EOF:
                self._end = min(self._end, offset)
            elif self._failure is None:
                self._failure = text
        elif self._failure is None:
            self._failure = "unexpected answer type %d" % kind

    def _ask(self):
        while len(self._asked) < READS_IN_FLIGHT and (self._wanted or self._next < self.size):
            if self._wanted:
                offset, length = self._wanted.pop()
            else:
                offset, length = self._next, min(REQUEST_SIZE, self.size - self._next)
                self._next += length
            num = self._sftp._async_request(self, CMD_READ, self._file.handle, int64(offset), length)
            self._asked[num] = (offset, length)

    def read(self, size=-1):
        """Up to ``size`` bytes (one request's worth at most); b"" at the end."""
        if size == 0:
            return b""
        try:
            while self._pos not in self._chunks:
                if self._pos >= self._end:
                    return b""
                self._ask()
                self._sftp._read_response()
                if self._failure is not None:
                    raise StorageError("reading %s failed: %s" % (self._storage.location_of(self.path), self._failure))
        except (EOFError, OSError, paramiko.SSHException) as exc:
            raise self._storage.transfer_error(self.path, exc, "reading")
        data = self._chunks.pop(self._pos)
        if 0 <= size < len(data):
            self._chunks[self._pos + size] = data[size:]
            data = data[:size]
        self._pos += len(data)
        return data

    def close(self):
        try:
            self._file.close()
        except Exception:  # closing a handle of a dead connection
            pass


class SftpStorage(object):
    type = "sftp"

    def __init__(self, params):
        if not HAS_PARAMIKO:
            raise ValidationError(
                "storage.type sftp needs the Python package paramiko for %s on this host: install "
                "python3-paramiko (Debian, Ubuntu, Fedora) or pip install paramiko" % sys.executable
            )
        # paramiko logs connection failures itself; the raised errors say it all, keep stderr quiet.
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
        self.host = params.get("host")
        if not self.host:
            raise ValidationError("storage.host is required for storage.type sftp")
        self.port = DEFAULT_PORT if params.get("port") is None else params["port"]
        if not 1 <= self.port <= 65535:
            raise ValidationError("storage.port must be between 1 and 65535, not %s" % self.port)
        self.user = params.get("user") or getpass.getuser()
        self._password = params.get("password")
        self.private_key = params.get("private_key")
        if self.private_key:
            self.private_key = os.path.expanduser(self.private_key)
        self._passphrase = params.get("private_key_passphrase")
        if self._passphrase is not None and not self.private_key:
            raise ValidationError("storage.private_key_passphrase is given without storage.private_key")
        self.known_hosts = os.path.expanduser(params.get("known_hosts") or DEFAULT_KNOWN_HOSTS)
        self.host_key = parse_host_key(params["host_key"]) if params.get("host_key") else None
        self.host_key_checking = params.get("host_key_checking") is not False
        self.root = remote_root(params.get("path"))
        self.retries = DEFAULT_RETRIES if params.get("retries") is None else params["retries"]
        self.timeout = DEFAULT_TIMEOUT if params.get("timeout") is None else params["timeout"]
        self._pkey = None
        self._client = None
        self._sftp = None
        self._dirs = set()  # directories known to exist
        self.delete_requests = 0  # remove requests of delete_many

    # -- naming
    @property
    def server(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s:%d" % (host, self.port)

    def _auth_method(self):
        if self.private_key and self._password is not None:
            return "private key %s, then password" % self.private_key
        if self.private_key:
            return "private key %s" % self.private_key
        if self._password is not None:
            return "password"
        return "ssh-agent and default keys"

    def location_of(self, path):
        """sftp://user@host:port/abs/path, or sftp://user@host:port/~/rel/path for the login directory."""
        if path.startswith("/"):
            url_path = path
        else:
            url_path = "/~/" + path if path not in ("", ".") else "/~"
        return "sftp://%s@%s%s" % (self.user, self.server, url_path)

    def _remote_path(self, key):
        parts = (key or "").split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise ValidationError("invalid storage key %r" % (key,))
        return posixpath.join(self.root, key) if self.root else key

    def location(self, key):
        """For people: where a key (or a folder, ending in /) lives. Display only: nothing is checked or read."""
        key = (key or "").lstrip("/")
        return self.location_of(posixpath.join(self.root, key) if self.root and key else self.root or key)

    def describe(self):
        """Which storage this is (the spool derives its target id from it): no credentials, no auth details."""
        return {
            "type": "sftp",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "path": self.root or ".",
            "location": self.location_of(self.root),
        }

    # -- connection
    def _load_key(self):
        if self._pkey is not None or not self.private_key:
            return self._pkey
        try:
            with open(self.private_key, "rb"):
                pass
        except (IOError, OSError) as exc:
            raise ValidationError("cannot read storage.private_key %s: %s" % (self.private_key, exc.strerror or exc))
        encrypted = False
        for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
            try:
                self._pkey = cls.from_private_key_file(self.private_key, password=self._passphrase)
                return self._pkey
            except paramiko.PasswordRequiredException:
                encrypted = True
            except (paramiko.SSHException, ValueError, TypeError, IndexError):
                continue  # not this key type (or a wrong passphrase)
        if encrypted and self._passphrase is None:
            raise ValidationError(
                "storage.private_key %s is encrypted: set storage.private_key_passphrase" % self.private_key
            )
        raise ValidationError(
            "cannot load storage.private_key %s: not an ed25519, ECDSA or RSA key in OpenSSH or PEM format, "
            "or the passphrase is wrong" % self.private_key
        )

    def _host_key_name(self):
        return self.host if self.port == DEFAULT_PORT else "[%s]:%d" % (self.host, self.port)

    def _prepare_host_keys(self, client):
        if not self.host_key_checking:
            client.set_missing_host_key_policy(_AcceptAnyKey())
            return
        client.set_missing_host_key_policy(_RefuseUnknownKey())
        if self.host_key is not None:
            # The client's own host-key table: paramiko writes it nowhere unless told to.
            client.get_host_keys().add(self._host_key_name(), self.host_key.get_name(), self.host_key)
            return
        if not os.path.exists(self.known_hosts):
            return
        try:
            # "system" keys are only read, never saved back.
            client.load_system_host_keys(self.known_hosts)
        except (IOError, OSError, paramiko.SSHException, InvalidHostKey, ValueError) as exc:
            raise ValidationError("cannot read storage.known_hosts %s: %s" % (self.known_hosts, exc))

    def _connect_args(self):
        args = dict(
            hostname=self.host, port=self.port, username=self.user, timeout=self.timeout,
            banner_timeout=self.timeout, auth_timeout=self.timeout, compress=False,
        )
        if "channel_timeout" in inspect.signature(paramiko.SSHClient.connect).parameters:
            args["channel_timeout"] = self.timeout  # paramiko >= 3.2
        if self._password is None and not self.private_key:
            # Neither given: do what ssh/sftp would, offer the agent's and ~/.ssh/id_* keys.
            args.update(look_for_keys=True, allow_agent=True)
        else:
            # Only what was configured: no agent or stray key may log in as someone else.
            args.update(look_for_keys=False, allow_agent=False, password=self._password, pkey=self._load_key())
        return args

    def _connect_once(self):
        client = paramiko.SSHClient()
        try:
            self._prepare_host_keys(client)
            client.connect(**self._connect_args())
            transport = client.get_transport()
            transport.set_keepalive(KEEPALIVE_SECONDS)
            sftp = paramiko.SFTPClient.from_transport(transport)
            if sftp is None:
                raise paramiko.SSHException("the server refused the SFTP subsystem")
            sftp.get_channel().settimeout(self.timeout)
        except BaseException:
            client.close()
            raise
        return client, sftp

    # Host key and login problems are configuration errors, like S3's 4xx answers at preflight: they
    # fail at once and are not spooled (the spool is for a storage that is down, not misconfigured).
    def _host_key_error(self, exc):
        if isinstance(exc, _UnknownHostKey):
            where = self.known_hosts if os.path.exists(self.known_hosts) else "%s (missing)" % self.known_hosts
            return ValidationError(
                "the host key of SFTP server %s is unknown (%s is not in %s); check the fingerprint with the "
                "server's administrator, then add it to the known_hosts file (ssh-keyscan -p %d %s) or set "
                "storage.host_key" % (self.server, describe_key(exc.key), where, self.port, self.host)
            )
        source = "storage.host_key" if self.host_key is not None else self.known_hosts
        return ValidationError(
            "the host key of SFTP server %s has changed: it offered %s, %s expects %s. If the server's key "
            "was replaced on purpose, update %s; otherwise someone may be intercepting the connection"
            % (self.server, describe_key(exc.key), source, describe_key(exc.expected_key), source)
        )

    def _connect(self, retries):
        attempt = 0
        while True:
            try:
                return self._connect_once()
            except (_UnknownHostKey, paramiko.BadHostKeyException) as exc:
                raise self._host_key_error(exc)
            except paramiko.AuthenticationException as exc:
                allowed = getattr(exc, "allowed_types", None)
                detail = "the server accepts only %s" % ", ".join(allowed) if allowed else "credentials refused"
                raise ValidationError(
                    "SFTP authentication as %s to %s failed (%s; tried %s)"
                    % (self.user, self.server, detail, self._auth_method())
                )
            except (EOFError, OSError, paramiko.SSHException) as exc:
                if attempt >= retries or not _is_transient(exc):
                    raise StorageError(
                        "cannot connect to SFTP server %s: %s%s"
                        % (self.server, _connection_cause(exc), " (%d attempts)" % (attempt + 1) if attempt else "")
                    )
            self._backoff(attempt)
            attempt += 1

    @staticmethod
    def _backoff(attempt):
        """Exponential backoff with jitter: half the delay fixed, half random."""
        delay = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** attempt))
        time.sleep(delay / 2 + random.uniform(0, delay / 2))

    def _alive(self):
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    def _session(self, retries=None):
        """The SFTP client, connecting (again) when there is none or the connection died."""
        if self._sftp is not None and self._alive():
            return self._sftp
        self.close()
        self._client, self._sftp = self._connect(self.retries if retries is None else retries)
        return self._sftp

    def close(self):
        client, self._client, self._sftp = self._client, None, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a dead connection
                pass

    # -- errors
    def _connection_failed(self, exc):
        """True when ``exc`` came from the connection, not from the server's answer to a request."""
        if not self._alive() or isinstance(exc, (EOFError, socket.timeout, ConnectionError, paramiko.SSHException)):
            return True
        # A channel closed under paramiko raises a bare socket.error before the transport notices.
        return isinstance(exc, OSError) and exc.errno is None and str(exc) == "Socket is closed"

    def transfer_error(self, path, exc, doing="writing"):
        """A StorageError for a transfer that failed because the connection did (or for another cause)."""
        if self._connection_failed(exc):
            return _ConnectionLost(
                "%s %s failed: the connection to the SFTP server %s was lost (%s)"
                % (doing, self.location_of(path), self.server, _connection_cause(exc))
            )
        return StorageError("%s %s failed: %s" % (doing, self.location_of(path), _sftp_cause(exc)))

    def _op(self, what, path, action):
        """action(sftp), retried on a new connection when the old one died on the way."""
        attempt = 0
        while True:
            sftp = self._session()
            try:
                return action(sftp)
            except (EOFError, OSError, paramiko.SSHException) as exc:
                if not self._connection_failed(exc) or attempt >= self.retries:
                    raise StorageError("cannot %s %s: %s" % (what, self.location_of(path), _sftp_cause(exc)))
                self.close()
            self._backoff(attempt)
            attempt += 1

    # -- helpers on a live session
    def _ensure_dir(self, sftp, path):
        """mkdir -p, mode 0750, remembering what exists; a concurrent creator is fine."""
        if path in ("", "/", ".") or path in self._dirs:
            return
        try:
            attrs = sftp.stat(path)
        except IOError as exc:
            if exc.errno != errno.ENOENT:
                raise
            self._ensure_dir(sftp, posixpath.dirname(path))
            try:
                sftp.mkdir(path, DIR_MODE)
            except IOError:
                try:
                    attrs = sftp.stat(path)
                except IOError:
                    attrs = None
                if attrs is None or not stat.S_ISDIR(attrs.st_mode):
                    raise
        else:
            if not stat.S_ISDIR(attrs.st_mode):
                raise StorageError("%s exists and is not a directory" % self.location_of(path))
        self._dirs.add(path)

    def rename_new(self, sftp, source, target):
        """Rename without ever replacing ``target`` (plain SFTP rename; checked first for other servers)."""
        if _lexists(sftp, target):
            raise StorageError("%s already exists; a stored backup is never overwritten" % self.location_of(target))
        try:
            sftp.rename(source, target)
        except IOError:
            if _lexists(sftp, target):
                raise StorageError("%s already exists; a stored backup is never overwritten" % self.location_of(target))
            raise

    def rename_over(self, sftp, source, target):
        """Rename, replacing ``target``: atomically with posix-rename@openssh.com, else remove, then rename."""
        try:
            sftp.posix_rename(source, target)
            return
        except IOError as exc:
            # paramiko does not tell which extensions the server offers: a refusal means "try the plain way".
            if self._connection_failed(exc):
                raise
        try:
            sftp.remove(target)
        except IOError as exc:
            if exc.errno != errno.ENOENT:
                raise
        sftp.rename(source, target)

    def remove_quietly(self, path):
        """Best effort: remove ``path``, on a new connection (one attempt) if need be; never raises."""
        for fresh in (False, True):
            try:
                if fresh:
                    self.close()
                self._session(retries=0).remove(path)
                return
            except IOError as exc:
                if exc.errno == errno.ENOENT or not self._connection_failed(exc):
                    return
            except Exception:  # whatever happens, an abort must not hide the original error
                pass

    # -- the storage contract
    def preflight(self, create):
        """Connect, log in, check the host key; then make sure the base directory is (or can be) there.

        create=False (check mode) only reads: the directory or its nearest existing parent must be a directory.
        """
        base = self.root or "."
        sftp = self._session()
        if not create:
            self._op("inspect", base, lambda s: self._check_existing(s, base))
            return
        probe = posixpath.join(self.root, ".songmetrix-probe-%d-%s" % (os.getpid(), _token()))
        try:
            self._ensure_dir(sftp, self.root)
            handle = sftp.open(probe, "wx", 0)
            handle.chmod(FILE_MODE)
            handle.close()
            sftp.remove(probe)
        except BackupError as exc:
            raise ValidationError("storage.path: %s" % exc)
        except (EOFError, OSError, paramiko.SSHException) as exc:
            raise ValidationError(
                "storage.path %s cannot be created or written: %s" % (self.location_of(base), _sftp_cause(exc))
            )

    def _check_existing(self, sftp, base):
        """The base directory, or else its nearest existing parent, must be a directory."""
        path = base
        while True:
            try:
                attrs = sftp.stat(path)
            except IOError as exc:
                parent = posixpath.dirname(path)
                if exc.errno != errno.ENOENT:
                    raise
                if parent in ("", path):
                    return  # the login directory or / itself
                path = parent
                continue
            if not stat.S_ISDIR(attrs.st_mode):
                raise ValidationError("storage.path %s: %s is not a directory" % (self.location_of(base), path))
            return

    def exists(self, key):
        path = self._remote_path(key)
        return self._op("look up", path, lambda sftp: _lexists(sftp, path))

    def open_writer(self, key, metadata=None, size_hint=None):
        path = self._remote_path(key)

        def start(sftp):
            self._ensure_dir(sftp, posixpath.dirname(path))
            return SftpWriter(self, sftp, path)

        return self._op("write to", posixpath.dirname(path) or ".", start)

    def put_small(self, key, data, metadata=None):
        """Write a small object (a manifest) like an artifact; a lost connection is retried."""
        self._store_small(key, data, replace=False)

    def create_small(self, key, data):
        """A status object that must not exist yet (a lock): the plain SFTP rename refuses an existing one."""
        self._store_small(key, data, replace=False)

    def replace_small(self, key, data):
        """Write a status object over an existing one (see rename_over); a lost connection is retried."""
        self._store_small(key, data, replace=True)

    def _store_small(self, key, data, replace):
        attempt = 0
        while True:
            writer = self.open_writer(key)
            try:
                writer.write(data)
                writer.commit(replace=replace)
                return
            except _ConnectionLost:
                writer.abort()
                if attempt >= self.retries:
                    raise
                # The rename may have happened just before the connection died.
                if self.exists(key) and self.get_small(key) == bytes(data):
                    return
            except BaseException:
                writer.abort()
                raise
            self._backoff(attempt)
            attempt += 1

    def open_reader(self, key):
        path = self._remote_path(key)

        def start(sftp):
            attrs = sftp.stat(path)
            if not stat.S_ISREG(attrs.st_mode):
                raise StorageError("%s is not a file" % self.location_of(path))
            return SftpReader(self, sftp, path, attrs.st_size)

        return self._op("read", path, start)

    def get_small(self, key):
        return read_whole(self.open_reader(key))

    def list_keys(self, prefix=""):
        """Every regular file under a key prefix (hidden .partial temp files too; callers decide), sorted.

        Symbolic links are not followed. A missing directory lists nothing.
        """
        prefix = prefix or ""
        if prefix.startswith("/") or ".." in prefix.split("/"):
            raise ValidationError("invalid storage key prefix %r" % (prefix,))
        start = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        return self._walk(start, prefix)

    def _walk(self, dir_key, prefix):
        path = self._remote_path(dir_key) if dir_key else (self.root or ".")
        entries = self._op("list", path, lambda sftp: _listdir(sftp, path))
        for entry in sorted(entries, key=lambda e: e.filename):
            key = "%s/%s" % (dir_key, entry.filename) if dir_key else entry.filename
            if stat.S_ISDIR(entry.st_mode):
                if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                    yield from self._walk(key, prefix)
            elif stat.S_ISREG(entry.st_mode) and key.startswith(prefix):
                yield ObjectInfo(key, entry.st_size, float(entry.st_mtime) if entry.st_mtime is not None else None)

    def delete(self, key):
        path = self._remote_path(key)

        def remove(sftp):
            try:
                sftp.remove(path)
            except IOError as exc:
                if exc.errno != errno.ENOENT:
                    raise

        self._op("delete", path, remove)

    def delete_many(self, keys):
        """Remove each key, up to WRITES_IN_FLIGHT remove requests in flight (sent in list order)."""
        paths = [(key, self._remote_path(key)) for key in keys]
        if not paths:
            return []
        removes = _Removes()
        sftp = self._session()
        try:
            for key, path in paths:
                while len(removes.pending) >= WRITES_IN_FLIGHT:
                    sftp._read_response()
                removes.pending[sftp._async_request(removes, CMD_REMOVE, path)] = key
                self.delete_requests += 1
            while removes.pending:
                sftp._read_response()
        except (EOFError, OSError, paramiko.SSHException) as exc:
            raise StorageError("%s; %d of %d removes were answered" % (
                self.transfer_error(self.root or ".", exc, "deleting objects under"), removes.answered, len(paths)))
        remove_emptied_folders(keys, lambda folder: _rmdir(sftp, self._remote_path(folder)))
        return removes.failures


def _rmdir(sftp, path):
    """rmdir for remove_emptied_folders: any refusal, a lost connection too, is an OSError (best effort)."""
    try:
        sftp.rmdir(path)
    except (EOFError, paramiko.SSHException) as exc:
        raise OSError(str(exc))


def _token():
    return binascii.hexlify(os.urandom(4)).decode("ascii")


def _lexists(sftp, path):
    try:
        sftp.lstat(path)
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def _listdir(sftp, path):
    try:
        return sftp.listdir_attr(path)
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return []
        raise


def _sftp_cause(exc):
    """The reason an SFTP request failed: the server's status text, or what happened to the connection."""
    if isinstance(exc, IOError) and exc.errno == errno.EACCES:
        return "permission denied"
    if isinstance(exc, IOError) and exc.errno == errno.ENOENT:
        return "no such file or directory"
    return _connection_cause(exc)
