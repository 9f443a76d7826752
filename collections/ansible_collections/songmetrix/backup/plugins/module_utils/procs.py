"""Child processes: spawned from argv lists (never a shell), stderr drained, exit status kept.

A dump tool's exit status and stderr decide whether its part of a run succeeded, whatever
later stages did, so every child is wrapped here and waited for explicitly.
"""

import fcntl
import os
import pty
import shutil
import signal
import subprocess
import termios
import threading

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError

STDERR_KEEP_BYTES = 64 * 1024
PIPE_SIZE = 1024 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux; the constant is in fcntl from Python 3.10


def enlarge_pipe(stream):
    """Ask for a 1 MiB pipe buffer: fewer context switches between stages (best effort, Linux only)."""
    if stream is None:
        return
    try:
        fcntl.fcntl(stream if isinstance(stream, int) else stream.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, ValueError):
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size for an unprivileged user


def find_tool(name, executable=None, package_hint=None):
    """Absolute path of a tool: ``executable`` when given, else ``name`` looked up on PATH."""
    if executable:
        if os.path.isfile(executable) and os.access(executable, os.X_OK):
            return executable
        raise ValidationError("executable %r does not exist or is not executable" % (executable,))
    path = shutil.which(name)
    if path is None:
        hint = " (install %s)" % package_hint if package_hint else ""
        raise ValidationError("%s was not found on PATH%s" % (name, hint))
    return path


def child_env(extra=None, drop=()):
    """The environment for a child: ours, C messages (parsed below), plus ``extra``."""
    env = dict(os.environ)
    for key in drop:
        env.pop(key, None)
    env["LC_MESSAGES"] = "C"
    env["LANGUAGE"] = "C"
    if extra:
        env.update({k: str(v) for k, v in extra.items() if v is not None})
    return env


class Child(object):
    """One running child process whose stderr is collected in the background."""

    def __init__(self, name, argv, env=None, stdin=None, stdout=subprocess.PIPE, pass_fds=(), cwd=None,
                 terminal_input=None):
        self.name = name
        self.argv = list(argv)
        self.killed = False
        self._stderr = bytearray()
        self._terminal = PrivateTerminal(terminal_input) if terminal_input is not None else None
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=env,
                pass_fds=tuple(pass_fds),
                close_fds=True,
                cwd=cwd,
                preexec_fn=self._terminal.attach if self._terminal else None,
            )
        except OSError as exc:
            if self._terminal:
                self._terminal.close()
            raise BackupError("cannot start %s (%s): %s" % (name, self.argv[0], exc.strerror or exc))
        if self._terminal:
            self._terminal.started()
        if stdout == subprocess.PIPE:
            enlarge_pipe(self.proc.stdout)
        if stdin == subprocess.PIPE:
            enlarge_pipe(self.proc.stdin)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, name="%s-stderr" % name)
        self._stderr_thread.daemon = True
        self._stderr_thread.start()

    def _drain_stderr(self):
        stream = self.proc.stderr
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                break
            self._stderr.extend(chunk)
            # Keep the head (first error) and the tail (last error) of a chatty tool.
            if len(self._stderr) > 2 * STDERR_KEEP_BYTES:
                del self._stderr[STDERR_KEEP_BYTES:-STDERR_KEEP_BYTES]
        stream.close()

    @property
    def stdout(self):
        return self.proc.stdout

    @property
    def stdin(self):
        return self.proc.stdin

    def stderr_text(self):
        # Dump tools may print bytes in any encoding; results must be valid UTF-8.
        return bytes(self._stderr).decode("utf-8", errors="replace").strip()

    def wait(self, timeout=None):
        rc = self.proc.wait(timeout=timeout)
        self._stderr_thread.join(timeout=10)
        if self._terminal:
            self._terminal.close()
        return rc

    def kill(self):
        """Stop the child because another stage failed (its own failure is then not the cause)."""
        if self.proc.poll() is None:
            self.killed = True
            try:
                self.proc.send_signal(signal.SIGKILL)
            except OSError:
                pass

    def failure(self, rc=None):
        """A message describing how this child failed, or None when it exited 0."""
        if rc is None:
            rc = self.wait()
        if rc == 0:
            return None
        if rc < 0:
            how = "was killed by signal %d" % -rc
        else:
            how = "exited with status %d" % rc
        err = last_lines(self.stderr_text())
        return "%s %s%s" % (self.name, how, (": " + err) if err else "")


class PrivateTerminal(object):
    """A pseudo-terminal that becomes a child's controlling terminal, with ``data`` typed into it.

    For a tool that reads a secret only from /dev/tty (age's passphrase prompt): the secret waits in
    the terminal's input queue, echo off, and never appears in argv, the environment or a file.
    What the tool prints on the terminal (its prompts) is read and dropped.
    """

    def __init__(self, data):
        self._master, self._slave = pty.openpty()
        attrs = termios.tcgetattr(self._slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        self._data = data
        self._drain = None

    def attach(self):
        # Runs in the child between fork and exec: only system calls, no Python locks taken.
        os.setsid()
        fcntl.ioctl(self._slave, termios.TIOCSCTTY, 0)

    def started(self):
        os.close(self._slave)
        self._slave = None
        view = memoryview(self._data)
        while view:
            view = view[os.write(self._master, view):]
        self._drain = threading.Thread(target=self._drop_output, name="pty-drain")
        self._drain.daemon = True
        self._drain.start()

    def _drop_output(self):
        while True:
            try:
                if not os.read(self._master, 4096):
                    return
            except OSError:  # EIO once the child closed the terminal
                return

    def close(self):
        if self._drain is not None:
            self._drain.join(timeout=10)
            self._drain = None
        for fd in (self._slave, self._master):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._slave = self._master = None


def last_lines(text, count=6, width=2000):
    """The end of a tool's stderr, enough to name the error without flooding the result."""
    lines = [line for line in text.splitlines() if line.strip()]
    tail = "\n".join(lines[-count:])
    return tail[-width:]


def run_capture(name, argv, env=None, pass_fds=(), timeout=120):
    """Run a short command (version probe, query) and return (rc, stdout text, stderr text)."""
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            pass_fds=tuple(pass_fds),
            timeout=timeout,
            check=False,  # the caller turns the status and stderr into a readable error
        )
    except subprocess.TimeoutExpired:
        raise BackupError("%s did not answer within %d seconds" % (name, timeout))
    except OSError as exc:
        raise BackupError("cannot run %s (%s): %s" % (name, argv[0], exc.strerror or exc))
    return (
        proc.returncode,
        proc.stdout.decode("utf-8", errors="replace"),
        proc.stderr.decode("utf-8", errors="replace"),
    )


def secret_pipe(content):
    """A pipe holding ``content`` for a child to read as /dev/fd/N; nothing touches the disk.

    The caller passes the returned fd in ``pass_fds`` and closes it after the child started.
    """
    data = content.encode("utf-8")
    if len(data) > 60000:  # must fit the pipe buffer, as nobody writes after the child starts
        raise ValidationError("a secret option is too large for a pipe (over 60000 bytes)")
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, data)
    finally:
        os.close(write_fd)
    return read_fd
