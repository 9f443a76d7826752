"""Extract a tar stream safely: every member is checked before anything of it is written.

Refused: absolute names, ``..`` components, links whose target lies outside the extraction root,
members that would be written through a symbolic link, device files. Python >= 3.9 has no
tarfile extraction filter on every version, so the checks are done here, member by member,
reading the archive in streaming mode (``r|``): nothing is spooled, nothing is seeked.
"""

import os
import tarfile
import threading

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import enlarge_pipe

CHUNK_SIZE = 1024 * 1024


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


def _check_symlink(parts, target, name):
    if not target or target.startswith("/"):
        raise BackupError("tar member %r is a link to %r, an absolute path: refused" % (name, target))
    depth = len(parts) - 1  # the folder the link lives in
    for part in target.split("/"):
        if part in ("", "."):
            continue
        depth += -1 if part == ".." else 1
        if depth < 0:
            raise BackupError("tar member %r is a link to %r, outside the restored tree: refused" % (name, target))


def _parent_dir(root, parts, name):
    """Create (0700) the member's parent folders; refuse going through a symbolic link."""
    current = root
    for part in parts[:-1]:
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise BackupError("tar member %r would be written through the symbolic link %s: refused" % (name, part))
        if not os.path.isdir(current):
            if os.path.lexists(current):
                os.unlink(current)
            os.mkdir(current, 0o700)
    return current


def _clear(path):
    if os.path.lexists(path) and not (os.path.isdir(path) and not os.path.islink(path)):
        os.unlink(path)


def extract_stream(fileobj, root):
    """Extract the tar stream ``fileobj`` into the existing folder ``root``; returns (entries, warnings)."""
    warnings = []
    folders = []
    entries = 0
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for member in tar:
            parts = safe_parts(member.name)
            if not parts:
                continue  # the archive's own root folder
            path = os.path.join(root, *parts)
            _parent_dir(root, parts, member.name)
            mode = member.mode & 0o777
            if member.isdir():
                if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
                    os.unlink(path)
                if not os.path.isdir(path):
                    os.mkdir(path, 0o700)
                folders.append((path, mode, member.mtime))
            elif member.isreg():
                _clear(path)
                source = tar.extractfile(member)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
                with os.fdopen(fd, "wb") as out:
                    while True:
                        chunk = source.read(CHUNK_SIZE)
                        if not chunk:
                            break
                        out.write(chunk)
                    os.fchmod(out.fileno(), mode)
                os.utime(path, (member.mtime, member.mtime))
            elif member.issym():
                _check_symlink(parts, member.linkname, member.name)
                _clear(path)
                os.symlink(member.linkname, path)
                # Lexically inside is not enough when the target goes through earlier links.
                real_root = os.path.realpath(root)
                resolved = os.path.realpath(path)
                if resolved != real_root and not resolved.startswith(real_root + os.sep):
                    raise BackupError("tar member %r is a link to %r, which resolves outside the restored tree: "
                                      "refused" % (member.name, member.linkname))
            elif member.islnk():
                source_parts = safe_parts(member.linkname, "hard link target")
                source_path = os.path.join(root, *source_parts)
                if not source_parts or not os.path.isfile(source_path) or os.path.islink(source_path):
                    raise BackupError("tar member %r is a hard link to %r, not a file restored before it: refused"
                                      % (member.name, member.linkname))
                _clear(path)
                os.link(source_path, path)
            elif member.isfifo():
                _clear(path)
                os.mkfifo(path, mode)
            else:
                warnings.append("tar member %s is a device or special file and was skipped" % member.name)
                continue
            entries += 1
    # Folder modes last (deepest first), so a read-only folder does not block its own contents.
    for path, mode, mtime in sorted(folders, key=lambda item: item[0].count(os.sep), reverse=True):
        os.chmod(path, mode)
        os.utime(path, (mtime, mtime))
    return entries, warnings


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
