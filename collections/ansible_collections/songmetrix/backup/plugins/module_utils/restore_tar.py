"""Extract a tar stream confined to its root folder: nothing is created, written, linked or read outside it.

The archive comes from storage and is untrusted. Every member is checked before anything of it
is written, and every file-system call is made relative to an open folder descriptor reached
without following links (confined_fs: openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS where the
kernel has it, else one O_NOFOLLOW component at a time). So:

- names: absolute names, ``..`` components and NUL are refused;
- no member is written through a symbolic link, wherever the link points or whenever it was made;
- a hard link's source is reached the same way and must be a regular file restored before it;
- a symbolic link's text must be relative, with its ``..`` components only at its start and no
  more of them than the link's depth. Every folder on the way to a link is a real folder, so a
  link can climb only real folders and descend from there: whatever later members add, it
  resolves inside the tree (``esc -> a/a/../../..`` with a later ``a -> .`` is refused at
  ``esc``: a ``..`` after a name). After the extraction each link is also resolved beneath the
  root by the kernel (openat2 RESOLVE_BENEATH), where it can;
- ``files_only`` (PostgreSQL directory-format archives) refuses every member but regular files and
  folders: a data file that is a link would make pg_restore, running as root, read any file;
- ``max_bytes`` caps the bytes written (a decompression bomb fails before it fills the disk);
- device files are skipped with a warning. Owners are restored (numerically) only when asked
  (``preserve_owner``, root only); otherwise setuid and setgid bits are dropped, with a warning
  naming the entries.

Python >= 3.9 has no tarfile extraction filter on every version, so the checks are done here,
reading the archive in streaming mode (``r|``): nothing is spooled, nothing is seeked.
"""

import os
import stat
import tarfile
import threading

from ansible_collections.songmetrix.backup.plugins.module_utils import confined_fs
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import enlarge_pipe

CHUNK_SIZE = 1024 * 1024
NAMES_IN_WARNING = 20
SETID_BITS = stat.S_ISUID | stat.S_ISGID
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def safe_parts(name, what="member"):
    """The path components of a member name; raises BackupError for an unsafe name."""
    if not name or "\x00" in name:
        raise BackupError("tar %s %r has an empty or invalid name: refused" % (what, name))
    if name.startswith("/") or name.startswith("\\"):
        raise BackupError("tar %s %r is an absolute path: refused" % (what, name))
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise BackupError("tar %s %r has a '..' component: refused" % (what, name))
    return parts


def check_symlink(parts, target, name):
    """Refuse a link whose text could resolve outside the tree (see the module's docstring)."""
    if not target or "\x00" in target or target.startswith("/"):
        raise BackupError("tar member %r is a link to %r, an empty or absolute path: refused" % (name, target))
    components = [part for part in target.split("/") if part not in ("", ".")]
    climbs = 0
    for index, part in enumerate(components):
        if part != "..":
            continue
        if index != climbs:
            raise BackupError("tar member %r is a link to %r: a '..' after a name resolves outside the restored "
                              "tree when that name is itself a link: refused" % (name, target))
        climbs += 1
    if climbs > len(parts) - 1:
        raise BackupError("tar member %r is a link to %r, outside the restored tree: refused" % (name, target))


def _names(entries):
    shown = ", ".join(entries[:NAMES_IN_WARNING])
    more = len(entries) - NAMES_IN_WARNING
    return shown + (" and %d more" % more if more > 0 else "")


class _Extraction(object):
    """One extraction into the folder open as ``root_fd``."""

    def __init__(self, root_fd, max_bytes, preserve_owner, files_only, keep_setid=False):
        self.root_fd = root_fd
        self.max_bytes = max_bytes
        self.preserve_owner = preserve_owner
        self.keep_setid = preserve_owner and keep_setid
        self.files_only = files_only
        self.written = 0
        self.entries = 0
        self.warnings = []
        self.folders = []  # (parts, mode, mtime, uid, gid), set last
        self.links = []  # names of the symbolic links made, resolved beneath the root at the end
        self.setid = []  # names whose setuid/setgid bits were kept (owners restored) or dropped
        self._cached = (None, None)  # (parts, fd) of the last parent folder

    # -- folders
    def parent(self, parts, name):
        """fd (not to be closed: cached) of the member's parent folder, created as needed."""
        key = tuple(parts[:-1])
        if self._cached[0] == key:
            return self._cached[1]
        try:
            fd = confined_fs.open_folder(self.root_fd, list(key), create=True)
        except confined_fs.LinkInPath as exc:
            raise BackupError("tar member %r would be written through the symbolic link %s: refused"
                              % (name, exc.filename))
        self.close_cache()
        self._cached = (key, fd)
        return fd

    def close_cache(self):
        if self._cached[1] is not None:
            os.close(self._cached[1])
        self._cached = (None, None)

    # -- attributes
    def mode(self, member):
        """The mode to set: setuid/setgid kept only with owners restored from a signed backup; either way the
        entry is named."""
        mode = member.mode & 0o7777
        if mode & SETID_BITS:
            self.setid.append(member.name)
            if not self.keep_setid:
                mode &= ~SETID_BITS
        return mode

    def own(self, fd, member):
        if self.preserve_owner:
            os.fchown(fd, member.uid, member.gid)  # before fchmod: chown clears setuid/setgid

    # -- members
    def remove_entry(self, dir_fd, leaf, name):
        """Remove what is at ``leaf`` (not a folder) so a member can take its place; a folder stays and fails."""
        try:
            info = os.stat(leaf, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            raise BackupError("tar member %r would replace the folder of the same name restored before it: refused"
                              % name)
        os.unlink(leaf, dir_fd=dir_fd)

    def regular(self, tar, member, dir_fd, leaf):
        if self.max_bytes is not None and self.written + member.size > self.max_bytes:
            raise self.too_big()
        self.remove_entry(dir_fd, leaf, member.name)
        source = tar.extractfile(member)
        fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | confined_fs.NOFOLLOW | CLOEXEC, 0o600,
                     dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk = source.read(CHUNK_SIZE)
                if not chunk:
                    break
                self.written += len(chunk)
                if self.max_bytes is not None and self.written > self.max_bytes:
                    raise self.too_big()
                out.write(chunk)
            out.flush()
            self.own(out.fileno(), member)
            os.fchmod(out.fileno(), self.mode(member))
            os.utime(out.fileno(), (member.mtime, member.mtime))

    def folder(self, member, parts, dir_fd, leaf):
        try:
            info = os.stat(leaf, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None and not stat.S_ISDIR(info.st_mode):
            os.unlink(leaf, dir_fd=dir_fd)  # a link or file of the same name: the folder replaces it
            info = None
        if info is None:
            os.mkdir(leaf, 0o700, dir_fd=dir_fd)
        self.folders.append((parts, self.mode(member), member.mtime, member.uid, member.gid))

    def symlink(self, member, parts, dir_fd, leaf):
        check_symlink(parts, member.linkname, member.name)
        self.remove_entry(dir_fd, leaf, member.name)
        os.symlink(member.linkname, leaf, dir_fd=dir_fd)
        if self.preserve_owner:
            os.chown(leaf, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)
        self.links.append(member.name)

    def hardlink(self, member, parts, dir_fd, leaf):
        source = safe_parts(member.linkname, "hard link target")
        refused = BackupError("tar member %r is a hard link to %r, not a file restored before it: refused"
                              % (member.name, member.linkname))
        if not source or source == parts:
            raise refused
        try:
            source_fd = confined_fs.open_folder(self.root_fd, source[:-1])
        except confined_fs.LinkInPath:
            raise BackupError("tar member %r is a hard link to %r, a path through a symbolic link: refused"
                              % (member.name, member.linkname))
        except OSError:
            raise refused
        try:
            try:
                info = os.stat(source[-1], dir_fd=source_fd, follow_symlinks=False)
            except OSError:
                raise refused
            if not stat.S_ISREG(info.st_mode):
                raise refused
            self.remove_entry(dir_fd, leaf, member.name)
            # linkat() without AT_SYMLINK_FOLLOW, from a folder reached without links: the entry itself.
            os.link(source[-1], leaf, src_dir_fd=source_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        finally:
            os.close(source_fd)

    def fifo(self, member, dir_fd, leaf):
        self.remove_entry(dir_fd, leaf, member.name)
        os.mkfifo(leaf, 0o600, dir_fd=dir_fd)
        fd = os.open(leaf, os.O_RDONLY | os.O_NONBLOCK | confined_fs.NOFOLLOW | CLOEXEC, dir_fd=dir_fd)
        try:
            self.own(fd, member)
            os.fchmod(fd, self.mode(member))
        finally:
            os.close(fd)

    def too_big(self):
        return BackupError("the archive expands to more than max_restore_size (%d bytes): refused, nothing of it was "
                           "restored" % self.max_bytes)

    def add(self, tar, member):
        parts = safe_parts(member.name)
        if not parts:
            return  # the archive's own root folder
        if self.files_only and not (member.isreg() or member.isdir()):
            raise BackupError("tar member %r is not a regular file or folder: %s holds only those, refused"
                              % (member.name, self.files_only))
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk() or member.isfifo()):
            self.warnings.append("tar member %s is a device or special file and was skipped" % member.name)
            return
        dir_fd = self.parent(parts, member.name)
        leaf = parts[-1]
        if member.isreg():
            self.regular(tar, member, dir_fd, leaf)
        elif member.isdir():
            self.folder(member, parts, dir_fd, leaf)
        elif member.issym():
            self.symlink(member, parts, dir_fd, leaf)
        elif member.islnk():
            self.hardlink(member, parts, dir_fd, leaf)
        else:
            self.fifo(member, dir_fd, leaf)
        self.entries += 1

    def finish(self):
        self.close_cache()
        for name in self.links:
            if confined_fs.resolves_beneath(self.root_fd, name) is False:
                raise BackupError("tar member %r is a link that resolves outside the restored tree: refused" % name)
        # Folder attributes last (deepest first), so a read-only folder does not block its own contents.
        for parts, mode, mtime, uid, gid in sorted(self.folders, key=lambda item: len(item[0]), reverse=True):
            fd = confined_fs.open_folder(self.root_fd, parts)
            try:
                if self.preserve_owner:
                    os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
        if self.setid:
            if self.keep_setid:
                self.warnings.append("restored with their setuid/setgid bits (owners restored): %s"
                                     % _names(self.setid))
            elif self.preserve_owner:
                # A setuid-root file from a backup anyone with storage access could have planted: not kept.
                self.warnings.append("setuid/setgid bits dropped (the backup is not signed by the job's key): %s"
                                     % _names(self.setid))
            else:
                self.warnings.append("setuid/setgid bits dropped (owners not restored): %s" % _names(self.setid))


def extract_stream(fileobj, root, max_bytes=None, preserve_owner=False, files_only=None, keep_setid=False):
    """Extract the tar stream ``fileobj`` into the existing folder ``root``; returns (entries, warnings).

    ``max_bytes`` caps the bytes written; ``preserve_owner`` restores numeric owners (root only), and with
    ``keep_setid`` (the backup is signed by the job's key) setuid/setgid bits too;
    ``files_only`` (a description such as "a PostgreSQL directory-format archive") refuses every
    member but regular files and folders."""
    root_fd = os.open(root, confined_fs.DIR_FLAGS | confined_fs.NOFOLLOW)
    job = _Extraction(root_fd, max_bytes, preserve_owner, files_only, keep_setid)
    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as tar:
            for member in tar:
                job.add(tar, member)
        job.finish()
    finally:
        job.close_cache()
        os.close(root_fd)
    return job.entries, job.warnings


class ThreadConsumer(object):
    """A pipeline writer whose bytes a worker thread reads as a file (``consume(fileobj)``)."""

    def __init__(self, name, consume):
        self.name = name
        self._consume = consume
        self._error = None
        self.result = None
        read_fd, write_fd = os.pipe()
        enlarge_pipe(write_fd)
        self._reader = os.fdopen(read_fd, "rb")
        self._writer = os.fdopen(write_fd, "wb")
        self._thread = threading.Thread(target=self._run, name=name)
        self._thread.daemon = True
        self._thread.start()

    def _run(self):
        try:
            self.result = self._consume(self._reader)
            while self._reader.read(CHUNK_SIZE):
                pass  # tar padding after the end-of-archive blocks
        except BaseException as exc:  # reported by write() and finish()
            self._error = exc
        finally:
            self._reader.close()

    def _raise(self):
        if isinstance(self._error, BackupError):
            raise BackupError(str(self._error))
        if isinstance(self._error, tarfile.TarError):
            raise BackupError("%s: the archive is damaged: %s" % (self.name, self._error))
        if isinstance(self._error, OSError):
            raise BackupError("%s failed: %s" % (self.name, self._error.strerror or self._error))
        raise BackupError("%s failed: %s" % (self.name, self._error))

    def write(self, data):
        try:
            self._writer.write(data)
        except OSError:
            self._thread.join()
            if self._error is None:
                raise BackupError("%s stopped reading" % self.name)
            self._raise()

    def finish(self):
        try:
            self._writer.close()
        except OSError:
            pass
        self._thread.join()
        if self._error is not None:
            self._raise()
        return self.result

    def abort(self):
        try:
            self._writer.close()
        except OSError:
            pass
        self._thread.join(timeout=30)
