"""Files source: a PAX tar stream of a directory, with include/exclude glob patterns.

Symlinks are stored as links, hard links as links, owners, modes and mtimes are kept; the
archive is plain tar so `tar -x` restores it. Patterns are shell globs (fnmatch) matched against
the path relative to the root and against the entry's name; '*' also matches '/'. An excluded
directory is not entered. With include patterns, only matching entries (and everything below a
matching directory) are stored, with their parent directories.
"""

import fnmatch
import os
import stat
import sys
import tarfile

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import NonEmptyCheck, ThreadProducer

COPY_CHUNK = 1024 * 1024


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
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            self._walk(tar, "", included=not self.include, pending=[])
        if self.entries == 0:
            raise BackupError("nothing to back up under %s (check source.include and source.exclude)" % self.root)

    def _walk(self, tar, relbase, included, pending):
        directory = os.path.join(self.root, relbase) if relbase else self.root
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise BackupError("cannot read directory %s: %s" % (directory, exc.strerror))
        for entry in entries:
            relpath = relbase + "/" + entry.name if relbase else entry.name
            if self.exclude and _matches(self.exclude, relpath, entry.name):
                continue
            chosen = included or _matches(self.include, relpath, entry.name)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if chosen:
                    self._flush(tar, pending)
                    self._add(tar, entry.path, relpath)
                    self._walk(tar, relpath, True, pending)
                else:
                    pending.append((entry.path, relpath))
                    self._walk(tar, relpath, False, pending)
                    if pending and pending[-1][1] == relpath:
                        pending.pop()
            elif chosen:
                self._flush(tar, pending)
                self._add(tar, entry.path, relpath)

    def _flush(self, tar, pending):
        """Store the not-yet-stored parent directories of an included entry."""
        for path, relpath in pending:
            self._add(tar, path, relpath)
        del pending[:]

    def _add(self, tar, path, relpath):
        try:
            info = tar.gettarinfo(path, arcname=relpath)
        except FileNotFoundError:
            self.warnings.append("%s vanished during the backup and was skipped" % path)
            return
        except OSError as exc:
            raise BackupError("cannot read %s: %s" % (path, exc.strerror))
        if info is None:  # sockets cannot be archived
            return
        self.entries += 1
        if not info.isreg():
            tar.addfile(info)
            return
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            self.warnings.append("%s vanished during the backup and was skipped" % path)
            return
        except OSError as exc:
            raise BackupError("cannot read %s: %s" % (path, exc.strerror))
        with handle:
            reader = _PaddedReader(handle, info.size)
            tar.addfile(info, reader)
            if reader.padded:
                self.warnings.append("%s shrank during the backup; its end was padded with zeros" % path)
            elif os.fstat(handle.fileno())[stat.ST_SIZE] > info.size:
                self.warnings.append("%s grew during the backup; the stored copy is truncated" % path)
