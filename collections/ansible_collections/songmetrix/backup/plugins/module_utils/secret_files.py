"""Files that hand a secret to a child tool (mongodump's ``--config``, sqlcmd's ``-i`` script), and
the sweep of those a killed run left behind.

Each file is mode 0600 and named ``.songmetrix-secret-<pid>-<random><suffix>`` after the module
process that owns it. The owner removes it as soon as the tool has exited, on failure and on
SIGTERM too; only a SIGKILL of the module skips that. So every new secret file first sweeps its
folder of the ones whose owner is gone: what a killed run left lasts until the next run that
writes a secret file there, not forever.
"""

import os
import re
import stat
import tempfile
import time

PREFIX = ".songmetrix-secret-"
_OWNED_NAME = re.compile(r"^\.songmetrix-secret-(\d+)-")
# A dead owner is not enough: a run in another PID namespace sharing the folder (a container with
# the same spool mount) looks dead from here. Its tool reads the file as it starts, long before this.
MIN_AGE_SECONDS = 60


def write_secret_file(directory, data, suffix):
    """Create a 0600 file holding ``data`` (bytes) in ``directory`` (default: the system's temp
    folder) and return its path. Raises OSError; a file that could not be written is removed."""
    directory = directory or tempfile.gettempdir()
    sweep_stale_secret_files(directory)
    fd, path = tempfile.mkstemp(prefix="%s%d-" % (PREFIX, os.getpid()), suffix=suffix, dir=directory)
    try:
        os.fchmod(fd, 0o600)  # mkstemp's mode already, whatever the umask; said again for the reader
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        os.close(fd)
        remove_secret_file(path)
        raise
    os.close(fd)
    return path


def remove_secret_file(path):
    """Remove ``path``; a file already gone is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def sweep_stale_secret_files(directory, now=None):
    """Remove this user's secret files in ``directory`` whose owner process is gone and that are
    older than MIN_AGE_SECONDS. Returns the removed paths; never raises."""
    now = time.time() if now is None else now
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _OWNED_NAME.match(name)
        if not match or _process_exists(int(match.group(1))):
            continue
        path = os.path.join(directory, name)
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() \
                    or now - info.st_mtime < MIN_AGE_SECONDS:
                continue
            os.unlink(path)
        except OSError:
            continue
        removed.append(path)
    return removed
