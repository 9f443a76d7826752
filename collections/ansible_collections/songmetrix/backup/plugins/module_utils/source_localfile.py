"""An existing local file as a backup source (the upload module): a SQL Server .bak, an export, a spool copy."""

import os

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import NonEmptyCheck


class FileProducer(object):
    """Pipeline producer reading a regular file; it fails if the file changes while it is read."""

    def __init__(self, path):
        self.path = path
        try:
            self.stream = open(path, "rb")
        except OSError as exc:
            raise BackupError("cannot read %s: %s" % (path, exc.strerror or exc))
        self._before = os.fstat(self.stream.fileno())

    def abort(self):
        self.stream.close()

    def failure(self):
        if self.stream.closed:
            return None
        after = os.fstat(self.stream.fileno())
        self.stream.close()
        if (after.st_size, after.st_mtime_ns) != (self._before.st_size, self._before.st_mtime_ns):
            return "%s changed while it was uploaded; upload it again once it is complete" % self.path
        return None


class LocalFileSource(object):
    tool_version = None
    server_version = None

    def __init__(self, path, engine=None, database=None):
        if not path or not os.path.isabs(path):
            raise ValidationError("src must be an absolute file path, not %r" % (path,))
        self.path = os.path.normpath(path)
        self.engine = engine or "file"
        self.database = database or os.path.basename(self.path)
        name = os.path.basename(self.path)
        suffix = name.rsplit(".", 1)[1] if "." in name.lstrip(".") else ""
        self.extension = suffix.lower() if suffix.isalnum() and len(suffix) <= 12 else "bin"
        self.format = self.extension

    def preflight(self):
        try:
            os.stat(self.path)
        except OSError as exc:
            raise ValidationError("src %s cannot be read: %s" % (self.path, exc.strerror or exc))
        if not os.path.isfile(self.path):
            raise ValidationError("src %s is not a regular file" % self.path)
        if not os.access(self.path, os.R_OK):
            raise ValidationError("src %s is not readable by this user" % self.path)

    def size_estimate(self):
        return os.path.getsize(self.path)

    def argv(self):
        return None

    def stream_checks(self):
        return [NonEmptyCheck("src %s" % self.path)]

    def open(self):
        return FileProducer(self.path)
