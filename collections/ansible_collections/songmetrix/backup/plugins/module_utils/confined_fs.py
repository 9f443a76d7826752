"""Folders opened beneath a root without following links: openat2(RESOLVE_BENEATH) where the kernel has it.

Linux 5.6 added openat2(), whose RESOLVE_BENEATH makes the kernel refuse any path that leaves
the folder it starts from (``..`` past it, an absolute link, a link that points out) and
RESOLVE_NO_SYMLINKS any path through a link. Python has no binding for it: it is called
through ctypes (syscall 437 on every architecture since 5.6). Where it is missing (an older
kernel, another system, a seccomp profile that answers ENOSYS or EPERM) the same rule is kept
by opening one component at a time with O_NOFOLLOW relative to the previous folder descriptor.
"""

import ctypes
import errno
import os
import stat

SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
O_PATH = getattr(os, "O_PATH", 0o10000000)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_state = {"syscall": None, "checked": False}


def _syscall():
    """libc's syscall() when openat2 works here, else None (checked once per process)."""
    if _state["checked"]:
        return _state["syscall"]
    _state["checked"] = True
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syscall
    except (OSError, AttributeError):
        return None
    call.restype = ctypes.c_long
    how = _OpenHow(O_PATH | os.O_DIRECTORY, 0, 0)
    fd = call(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(-100), ctypes.c_char_p(b"/"), ctypes.byref(how),
              ctypes.c_size_t(ctypes.sizeof(how)))  # -100: AT_FDCWD
    if fd < 0:
        return None  # ENOSYS (kernel < 5.6), EPERM/ENOSYS from a seccomp filter, or not Linux
    os.close(fd)
    _state["syscall"] = call
    return call


def have_openat2():
    return _syscall() is not None


def openat2(dir_fd, path, flags, resolve):
    """The fd of ``path`` opened relative to ``dir_fd`` with openat2's ``resolve`` flags; OSError as open()."""
    call = _syscall()
    if call is None:
        raise OSError(errno.ENOSYS, "openat2 is not available")
    how = _OpenHow(flags | getattr(os, "O_CLOEXEC", 0), 0, resolve)
    fd = call(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dir_fd), ctypes.c_char_p(os.fsencode(path)),
              ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return fd


class LinkInPath(OSError):
    """A component of a path beneath the root is a symbolic link (or not a folder) where a folder is needed."""


def open_folder(root_fd, parts, create=False, mode=0o700):
    """fd of the folder ``root/parts`` reached without following any link.

    Missing folders are created (``mode``) when ``create``; a regular file, FIFO or other non-link in
    the way is replaced by a folder then too. A symbolic link on the way raises LinkInPath,
    whatever it points to."""
    if not parts:
        return os.dup(root_fd)
    if _syscall() is not None:
        try:
            return openat2(root_fd, "/".join(parts), DIR_FLAGS,
                           RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
        except OSError:
            pass  # missing, or a link or file on the way: the walk below creates, replaces or says which
    fd = os.dup(root_fd)
    try:
        for index, part in enumerate(parts):
            try:
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                info = None
            if info is not None and stat.S_ISLNK(info.st_mode):
                raise LinkInPath(errno.ELOOP, "is a symbolic link", "/".join(parts[:index + 1]))
            if info is not None and not stat.S_ISDIR(info.st_mode):
                if not create:
                    raise LinkInPath(errno.ENOTDIR, "is not a folder", "/".join(parts[:index + 1]))
                os.unlink(part, dir_fd=fd)
                info = None
            if info is None:
                if not create:
                    raise FileNotFoundError(errno.ENOENT, "no such folder", "/".join(parts[:index + 1]))
                os.mkdir(part, mode, dir_fd=fd)
            child = os.open(part, DIR_FLAGS | NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def resolves_beneath(root_fd, path):
    """True when ``path`` (a link beneath the root, say) resolves inside the root or dangles there, False when
    its resolution leaves the root; None when the kernel cannot tell (no openat2)."""
    if _syscall() is None:
        return None
    for _attempt in range(10):
        try:
            fd = openat2(root_fd, path, O_PATH, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                continue  # a rename elsewhere on the system raced the lookup: the kernel asks to retry
            if exc.errno == errno.EXDEV:
                return False
            return True  # ENOENT (dangling inside), ELOOP (a loop of links inside): neither leaves the root
        os.close(fd)
        return True
    return False
