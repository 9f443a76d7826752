"""Files source: a PAX tar stream of a directory, with include/exclude glob patterns.

Symlinks are stored as links, hard links as links, owners, modes and mtimes are kept; the
archive is plain tar so `tar -x` restores it. Patterns are shell globs (fnmatch) matched against
the path relative to the root and against the entry's name; '*' also matches '/'. An excluded
directory is not entered. With include patterns, only matching entries (and everything below a
matching directory) are stored, with their parent directories.

The tree may belong to other local users, who can swap a file for a symlink (to a root-only
secret) between the walk's look at it and its opening. So the walk never resolves a path: every
directory and file is opened relative to its parent's descriptor with O_NOFOLLOW (and O_NONBLOCK,
for a FIFO put in its place), its metadata comes from fstat, and an entry whose device and inode
differ from the walk's lstat was swapped: it is skipped with a warning naming it, never stored.
"""

import errno
import fnmatch
import grp
import os
import pwd
import stat
import sys
import tarfile

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import NonEmptyCheck, ThreadProducer

COPY_CHUNK = 1024 * 1024
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# Never follow a symlink, never block on a FIFO or take a terminal: the entry may have been swapped.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | _CLOEXEC
DIR_FLAGS = FILE_FLAGS | os.O_DIRECTORY
_TAR_TYPES = ((stat.S_ISREG, tarfile.REGTYPE), (stat.S_ISDIR, tarfile.DIRTYPE), (stat.S_ISLNK, tarfile.SYMTYPE),
              (stat.S_ISFIFO, tarfile.FIFOTYPE), (stat.S_ISCHR, tarfile.CHRTYPE), (stat.S_ISBLK, tarfile.BLKTYPE))


def _matches(patterns, relpath, name):
    return any(fnmatch.fnmatchcase(relpath, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


class _PaddedReader(object):
    """Reads exactly ``size`` bytes: a file that shrank while being read is padded with zeros
    (as GNU tar does) so the archive stays valid; the caller is told."""

    def __init__(self, handle, size):
        self.handle = handle
        self.remaining = size
        self.padded = False

    def read(self, count=-1):
        if self.remaining <= 0:
            return b""
        if count is None or count < 0 or count > self.remaining:
            count = self.remaining
        data = self.handle.read(count)
        if not data:
            self.padded = True
            data = b"\0" * count
        self.remaining -= len(data)
        return data


class FilesSource(object):
    engine = "files"
    extension = "tar"
    server_version = None

    def __init__(self, params, spool_dir):
        self.root = params.get("path")
        if not self.root:
            raise ValidationError("source.path (the directory to back up) is required for engine files")
        for key in ("host", "port", "user", "password", "database", "format", "jobs"):
            if params.get(key):
                raise ValidationError("source.%s is not used by engine files" % key)
        self.root = os.path.abspath(self.root)
        self.database = self.root
        self.include = list(params.get("include") or [])
        self.exclude = list(params.get("exclude") or [])
        self.tool_version = "python-tarfile %d.%d.%d" % sys.version_info[:3]
        self.warnings = []
        self.entries = 0

    def preflight(self):
        if not os.path.isdir(self.root):
            raise ValidationError("source.path %s does not exist or is not a directory" % self.root)
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise ValidationError("source.path %s is not readable" % self.root)
        return {"tool_version": self.tool_version, "server_version": None}

    def argv(self):
        return None

    def stream_checks(self):
        return [NonEmptyCheck("tar of %s" % self.root)]

    def open(self):
        return ThreadProducer("tar of %s" % self.root, self._write_tar)

    def _write_tar(self, out):
        self._inodes = {}  # (st_dev, st_ino) of stored files with several links -> their name in the archive
        self._names = {}
        try:
            root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        except OSError as exc:
            raise BackupError("cannot read directory %s: %s" % (self.root, exc.strerror))
        try:
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                self._walk(tar, root_fd, "", included=not self.include, pending=[])
        finally:
            os.close(root_fd)
        if self.entries == 0:
            raise BackupError("nothing to back up under %s (check source.include and source.exclude)" % self.root)

    def _path(self, relpath):
        return os.path.join(self.root, relpath) if relpath else self.root

    def _walk(self, tar, dir_fd, relbase, included, pending):
        """Store the entries of the open directory ``dir_fd`` (``relbase`` in the archive)."""
        try:
            with os.scandir(dir_fd) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            raise BackupError("cannot read directory %s: %s" % (self._path(relbase), exc.strerror))
        for entry in entries:
            relpath = relbase + "/" + entry.name if relbase else entry.name
            if self.exclude and _matches(self.exclude, relpath, entry.name):
                continue
            chosen = included or _matches(self.include, relpath, entry.name)
            try:
                seen = entry.stat(follow_symlinks=False)  # the walk's lstat, relative to dir_fd
            except FileNotFoundError:
                self._vanished(relpath)
                continue
            except OSError as exc:
                raise BackupError("cannot read %s: %s" % (self._path(relpath), exc.strerror))
            if stat.S_ISDIR(seen.st_mode):
                child = self._open_same(dir_fd, entry.name, relpath, seen, DIR_FLAGS)
                if child is None:
                    continue
                try:
                    info = os.fstat(child)
                    if chosen:
                        self._flush(tar, pending)
                        self._store(tar, relpath, info)
                        self._walk(tar, child, relpath, True, pending)
                    else:
                        pending.append((relpath, info))
                        self._walk(tar, child, relpath, False, pending)
                        if pending and pending[-1][0] == relpath:
                            pending.pop()
                finally:
                    os.close(child)
            elif chosen:
                self._flush(tar, pending)
                self._add(tar, dir_fd, entry.name, relpath, seen)

    def _flush(self, tar, pending):
        """Store the not-yet-stored parent directories of an included entry."""
        for relpath, info in pending:
            self._store(tar, relpath, info)
        del pending[:]

    def _open_same(self, dir_fd, name, relpath, seen, flags):
        """``name`` opened relative to ``dir_fd`` if it is still the entry the walk saw (same device
        and inode, no symlink in its place); None, with a warning, when it vanished or was swapped."""
        try:
            fd = os.open(name, flags, dir_fd=dir_fd)
        except FileNotFoundError:
            self._vanished(relpath)
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO):  # now a symlink, a file, a socket
                self._swapped(relpath)
                return None
            raise BackupError("cannot read %s: %s" % (self._path(relpath), exc.strerror))
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino) or stat.S_IFMT(info.st_mode) != stat.S_IFMT(
                seen.st_mode):
            os.close(fd)
            self._swapped(relpath)
            return None
        return fd

    def _add(self, tar, dir_fd, name, relpath, seen):
        if stat.S_ISREG(seen.st_mode):
            fd = self._open_same(dir_fd, name, relpath, seen, FILE_FLAGS)
            if fd is not None:
                with os.fdopen(fd, "rb") as handle:
                    self._store(tar, relpath, os.fstat(fd), handle)
            return
        linkname = ""
        if stat.S_ISLNK(seen.st_mode):
            try:
                linkname = os.readlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                self._vanished(relpath)
                return
            except OSError as exc:
                if exc.errno == errno.EINVAL:  # no longer a symlink
                    self._swapped(relpath)
                    return
                raise BackupError("cannot read %s: %s" % (self._path(relpath), exc.strerror))
        self._store(tar, relpath, seen, linkname=linkname)

    def _store(self, tar, relpath, info, handle=None, linkname=""):
        """Add one entry whose metadata is ``info`` (fstat of ``handle`` for a regular file)."""
        tarinfo = self._tarinfo(relpath, info, linkname)
        if tarinfo is None:  # sockets cannot be archived
            return
        self.entries += 1
        if tarinfo.type != tarfile.REGTYPE:
            tar.addfile(tarinfo)
            return
        reader = _PaddedReader(handle, tarinfo.size)
        tar.addfile(tarinfo, reader)
        path = self._path(relpath)
        if reader.padded:
            self.warnings.append("%s shrank during the backup; its end was padded with zeros" % path)
        elif os.fstat(handle.fileno())[stat.ST_SIZE] > tarinfo.size:
            self.warnings.append("%s grew during the backup; the stored copy is truncated" % path)

    def _tarinfo(self, relpath, info, linkname):
        """The archive header of an entry, from its stat result (what TarFile.gettarinfo does from a path)."""
        kind = next((tar_type for test, tar_type in _TAR_TYPES if test(info.st_mode)), None)
        if kind is None:
            return None
        tarinfo = tarfile.TarInfo(relpath)
        if kind == tarfile.REGTYPE and info.st_nlink > 1:
            inode = (info.st_dev, info.st_ino)
            if inode in self._inodes:
                kind, linkname = tarfile.LNKTYPE, self._inodes[inode]
            else:
                self._inodes[inode] = relpath
        tarinfo.type = kind
        tarinfo.linkname = linkname
        tarinfo.mode = stat.S_IMODE(info.st_mode)
        tarinfo.uid, tarinfo.gid = info.st_uid, info.st_gid
        tarinfo.uname, tarinfo.gname = self._name(pwd.getpwuid, info.st_uid), self._name(grp.getgrgid, info.st_gid)
        tarinfo.mtime = info.st_mtime
        tarinfo.size = info.st_size if kind == tarfile.REGTYPE else 0
        if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            tarinfo.devmajor, tarinfo.devminor = os.major(info.st_rdev), os.minor(info.st_rdev)
        return tarinfo

    def _name(self, lookup, number):
        key = (lookup, number)
        if key not in self._names:
            try:
                self._names[key] = lookup(number)[0]
            except KeyError:
                self._names[key] = ""
        return self._names[key]

    def _vanished(self, relpath):
        self.warnings.append("%s vanished during the backup and was skipped" % self._path(relpath))

    def _swapped(self, relpath):
        self.warnings.append("%s was replaced (by a symlink or another file) while it was backed up and was "
                             "skipped, never followed" % self._path(relpath))
