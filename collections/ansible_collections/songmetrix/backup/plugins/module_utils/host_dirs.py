"""Folders on this host: created with their mode at every level, and private folders used only
when they are what they must be (a directory, no symlink, owned by this user, writable by nobody
else), so that another local user can neither plant a file nor a symlink in them."""

import os
import stat

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

PRIVATE_DIR_MODE = 0o700


def make_dirs(path, mode):
    """``os.makedirs(path, mode, exist_ok=True)`` where every level it creates gets ``mode`` (less
    the umask): os.makedirs gives it to the last level only (Python 3.7+), its parents get 0777
    less the umask, 0755 under the usual 022."""
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, mode)
        except FileExistsError:
            if not os.path.isdir(folder):  # a file, or a symlink to one: mkdir's error stands
                raise


def open_private_dir(path, label):
    """A file descriptor of the folder ``path`` (``label`` names its option in messages), created
    0700 with its missing parents when it does not exist.

    Refused with a ValidationError: a symlink in its place, a folder of another user (never
    adopted: whoever owns it controls its content) and a folder that group or others may write to
    (they could plant a symlink there). The caller opens files relative to the returned fd, so a
    folder swapped after this check is never used.
    """
    path = os.path.normpath(path)  # a trailing slash would make O_NOFOLLOW follow a symlink
    created = False
    try:
        os.mkdir(path, PRIVATE_DIR_MODE)
        created = True
    except FileExistsError:
        pass
    except FileNotFoundError:
        try:
            make_dirs(os.path.dirname(path), PRIVATE_DIR_MODE)
            os.mkdir(path, PRIVATE_DIR_MODE)
            created = True
        except OSError as exc:
            raise ValidationError("%s %s cannot be created: %s" % (label, path, exc.strerror or exc))
    except OSError as exc:
        raise ValidationError("%s %s cannot be created: %s" % (label, path, exc.strerror or exc))
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if os.path.islink(path):
            raise ValidationError("%s %s is a symbolic link: refused (it must be a folder of this user)"
                                  % (label, path))
        raise ValidationError("%s %s cannot be opened as a folder: %s" % (label, path, exc.strerror or exc))
    try:
        info = os.fstat(fd)
        euid = os.geteuid()
        if info.st_uid != euid:
            raise ValidationError(
                "%s %s belongs to uid %d, not to this user (uid %d): refused, a folder of another user is "
                "never used; remove it or choose another %s" % (label, path, info.st_uid, euid, label))
        if created:
            os.fchmod(fd, PRIVATE_DIR_MODE)  # exactly 0700, whatever the umask
        elif stat.S_IMODE(info.st_mode) & 0o022:
            raise ValidationError(
                "%s %s can be written by group or others (mode %04o): refused, another user could plant a "
                "symlink in it; make it 0700 (chmod go-w) or choose another %s"
                % (label, path, stat.S_IMODE(info.st_mode), label))
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private_file(dir_fd, name, label, flags=os.O_RDWR | os.O_CREAT, mode=0o600):
    """``name`` in the private folder ``dir_fd``, opened without following a symlink (O_NOFOLLOW)
    and without blocking on a FIFO (O_NONBLOCK); only a regular file of this user with one link is
    used. Raises ValidationError naming ``label`` (the file's full path)."""
    flags |= os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(name, flags, mode, dir_fd=dir_fd)
    except OSError as exc:
        if stat.S_ISLNK(_lstat_mode(dir_fd, name)):
            raise ValidationError("%s is a symbolic link: refused, never followed; remove it" % label)
        raise ValidationError("cannot open %s: %s" % (label, exc.strerror or exc))
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
        os.close(fd)
        raise ValidationError(
            "%s is not a regular file of this user with one link (type %s, uid %d, %d links): refused; remove it"
            % (label, _kind(info.st_mode), info.st_uid, info.st_nlink))
    return fd


def _lstat_mode(dir_fd, name):
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return 0


def _kind(mode):
    for test, text in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "folder"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return text
    return "unknown"
