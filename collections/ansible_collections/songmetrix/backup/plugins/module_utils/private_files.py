"""Private files and folders of a run that a crash must not leave behind for good: files handing a
secret to a child tool (mongodump's ``--config``, sqlcmd's ``-i`` script) and full-size copies of
the data (SQLite's consistent copy, pg_dump's directory format, a restore's work folder, a restore
test's scratch folder). The sweep removes those a killed run left.

Each is 0600 (folders 0700) and named ``.songmetrix-private-<pid>-<kind>-<random>[suffix]`` after
the module process that owns it and what it holds. The owner removes it when done, on failure and
on SIGTERM too; only a SIGKILL of the module (the OOM killer, ``kill -9``) skips that. So every new
one first sweeps its folder of those whose owner is gone: what a killed run left lasts until the
next run that makes one there, not forever.

GnuPG's throw-away home is not one of them: gpg-agent puts its sockets in it, and a socket path
must fit in 108 bytes, so that folder keeps its short ``sm-gpg-`` name.
"""

import os
import re
import shutil
import stat
import tempfile
import time

PREFIX = ".songmetrix-private-"
_OWNED_NAME = re.compile("^" + re.escape(PREFIX) + r"(\d+)-")
# A dead owner is not enough: a run in another PID namespace sharing the folder (a container with
# the same spool mount) looks dead from here. Its tool reads the file as it starts, long before
# this, and a SQLite copy being written is modified all the time.
MIN_AGE_SECONDS = 60


def _prefix(kind):
    return "%s%d-%s-" % (PREFIX, os.getpid(), kind)


def create_private_file(directory, kind, suffix):
    """Create an empty 0600 file in ``directory`` (default: the system's temp folder), after
    sweeping the folder; returns (fd, path). Raises OSError."""
    directory = directory or tempfile.gettempdir()
    sweep_stale_private_files(directory)
    # mkstemp creates it 0600 whatever the umask.
    return tempfile.mkstemp(prefix=_prefix(kind), suffix=suffix, dir=directory)


def create_private_dir(directory, kind):
    """Create an empty 0700 folder in ``directory`` (default: the system's temp folder), after
    sweeping the folder; returns its path. Raises OSError."""
    directory = directory or tempfile.gettempdir()
    sweep_stale_private_files(directory)
    return tempfile.mkdtemp(prefix=_prefix(kind), dir=directory)


def write_private_file(directory, kind, data, suffix):
    """A new private file (see create_private_file) holding ``data`` (bytes); returns its path.
    Raises OSError; a file that could not be written is removed."""
    fd, path = create_private_file(directory, kind, suffix)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        os.close(fd)
        remove_private_file(path)
        raise
    os.close(fd)
    return path


def remove_private_file(path):
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


def sweep_stale_private_files(directory):
    """Remove this user's private files and folders in ``directory`` (a SQLite copy's ``-journal``,
    ``-wal`` and ``-shm`` too) whose owner process is gone and that are older than MIN_AGE_SECONDS.
    Returns the removed paths; never raises."""
    now = time.time()
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
            info = os.lstat(path)  # a symlink is neither: never followed, never removed
            if info.st_uid != os.geteuid() or now - info.st_mtime < MIN_AGE_SECONDS:
                continue
            if stat.S_ISREG(info.st_mode):
                os.unlink(path)
            elif stat.S_ISDIR(info.st_mode):
                shutil.rmtree(path)
            else:
                continue
        except OSError:
            continue
        removed.append(path)
    return removed
