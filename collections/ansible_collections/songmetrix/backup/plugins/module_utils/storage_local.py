"""Local-directory storage: artifacts written to a temporary name, fsynced, then linked into place."""

import errno
import os

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.host_dirs import make_dirs
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import (
    ObjectInfo,
    read_whole,
    remove_emptied_folders,
)

FILE_MODE = 0o600
DIR_MODE = 0o750  # every folder this storage creates, the root's missing parents and <prefix>/<job>/<YYYY>/... too


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _oserror_text(exc):
    return exc.strerror or str(exc)


class LocalArtifactWriter(object):
    """Writes one artifact under a hidden temporary name; commit() makes it visible atomically."""

    def __init__(self, final_path):
        self.final_path = final_path
        directory, name = os.path.split(final_path)
        self.temp_path = os.path.join(directory, ".%s.partial-%d" % (name, os.getpid()))
        self._fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)

    def write(self, data):
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except OSError as exc:
                raise BackupError("writing %s failed: %s" % (self.final_path, _oserror_text(exc)))
            view = view[written:]

    def commit(self, replace=False):
        """Make the file visible; ``replace`` (status objects only) lets it take an existing one's place."""
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            if replace:
                os.replace(self.temp_path, self.final_path)  # readers see the old file or the new one
            else:
                # link() refuses to replace an existing file, unlike rename(): a backup is never overwritten.
                os.link(self.temp_path, self.final_path)
                os.unlink(self.temp_path)
            _fsync_dir(os.path.dirname(self.final_path))
        except OSError as exc:
            self.abort()
            if exc.errno == errno.EEXIST:
                raise BackupError("%s already exists; a stored backup is never overwritten" % self.final_path)
            raise BackupError("storing %s failed: %s" % (self.final_path, _oserror_text(exc)))

    def abort(self):
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        try:
            os.unlink(self.temp_path)
        except OSError:
            pass


class LocalFileReader(object):
    """A stored file opened for reading; ``size`` is known up front."""

    def __init__(self, path):
        try:
            self._handle = open(path, "rb")
            self.size = os.fstat(self._handle.fileno()).st_size
        except OSError as exc:
            raise BackupError("cannot read %s: %s" % (path, _oserror_text(exc)))
        self.path = path

    def read(self, count=-1):
        try:
            return self._handle.read(count)
        except OSError as exc:
            raise BackupError("reading %s failed: %s" % (self.path, _oserror_text(exc)))

    def close(self):
        self._handle.close()


class LocalStorage(object):
    type = "local"

    def __init__(self, path):
        path = os.path.expanduser(path or "")
        if not path or not os.path.isabs(path):
            raise ValidationError("storage.path must be an absolute directory path, not %r" % (path,))
        self.root = os.path.normpath(path)
        self.delete_requests = 0  # unlink() calls of delete_many

    def describe(self):
        return {"type": "local", "path": self.root}

    def close(self):
        pass

    def location(self, key):
        return os.path.join(self.root, *key.split("/"))

    def preflight(self, create):
        """Prove the root is a writable directory (creating it unless ``create`` is false)."""
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise ValidationError("storage.path %s exists and is not a directory" % self.root)
        if not create:
            existing = self.root
            while not os.path.exists(existing):
                existing = os.path.dirname(existing)
            if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
                raise ValidationError("storage.path %s cannot be created or written (%s)" % (self.root, existing))
            return
        try:
            make_dirs(self.root, DIR_MODE)
            probe = os.path.join(self.root, ".songmetrix-probe-%d" % os.getpid())
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ValidationError("storage.path %s is not writable: %s" % (self.root, _oserror_text(exc)))

    def exists(self, key):
        return os.path.lexists(self.location(key))

    def open_writer(self, key, metadata=None, size_hint=None):
        path = self.location(key)
        try:
            make_dirs(os.path.dirname(path), DIR_MODE)
            return LocalArtifactWriter(path)
        except OSError as exc:
            raise BackupError("cannot write to %s: %s" % (os.path.dirname(path), _oserror_text(exc)))

    def put_small(self, key, data, metadata=None):
        """Write a small object (a manifest) atomically: temp name, fsync, link, fsync dir."""
        self._store_small(key, data, replace=False)

    def create_small(self, key, data):
        """A status object that must not exist yet (a lock): link() refuses an existing one."""
        self._store_small(key, data, replace=False)

    def replace_small(self, key, data):
        """Write a status object over an existing one: temp name, fsync, os.replace, fsync dir."""
        self._store_small(key, data, replace=True)

    def _store_small(self, key, data, replace):
        writer = self.open_writer(key)
        try:
            writer.write(data)
        except BackupError:
            writer.abort()
            raise
        writer.commit(replace=replace)

    def delete(self, key):
        try:
            os.unlink(self.location(key))
        except FileNotFoundError:
            pass

    def delete_many(self, keys):
        failures = []
        for key in keys:
            self.delete_requests += 1
            try:
                os.unlink(self.location(key))
            except FileNotFoundError:
                pass
            except OSError as exc:
                failures.append((key, _oserror_text(exc)))
        remove_emptied_folders(keys, lambda folder: os.rmdir(self.location(folder)))
        return failures

    def open_reader(self, key):
        return LocalFileReader(self.location(key))

    def get_small(self, key):
        return read_whole(self.open_reader(key))

    def list_keys(self, prefix=""):
        """Every file under ``prefix`` (a key prefix; a partial last part matches file names too)."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.location(folder) if folder else self.root
        for directory, subdirs, files in os.walk(start, onerror=self._walk_error):
            subdirs.sort()
            for name in sorted(files):
                full = os.path.join(directory, name)
                key = os.path.relpath(full, self.root).replace(os.sep, "/")
                if not key.startswith(prefix):
                    continue
                try:
                    info = os.lstat(full)
                except FileNotFoundError:
                    continue  # removed while listing
                yield ObjectInfo(key, info.st_size, info.st_mtime)

    def _walk_error(self, exc):
        if not isinstance(exc, FileNotFoundError):
            raise BackupError("cannot list %s: %s" % (exc.filename, _oserror_text(exc)))
