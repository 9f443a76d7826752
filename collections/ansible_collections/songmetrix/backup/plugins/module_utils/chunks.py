"""Split artifacts: one stream stored as several objects of at most ``max_chunk_size`` bytes.

For storages with an object size limit (a file system's, a provider's). The chunks concatenate
to the artifact: `cat` joins them. Each chunk is its own stored object with its own SHA-256 in the
manifest's `chunks` list; the manifest's `sha256` stays that of the whole stream.
"""

import hashlib
import re

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

MIN_CHUNK_SIZE = 1024 * 1024
UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.I)


def parse_size(value):
    """Bytes from an int or a string like '4G', '512MiB', '1048576' (binary units); None stays None."""
    if value is None or value == "":
        return None
    match = SIZE.match(str(value))
    if not match:
        raise ValidationError("max_chunk_size must be a number of bytes or a size like 512M or 4G, not %r" % (value,))
    size = int(match.group(1)) * UNITS[match.group(2).upper()]
    if size < MIN_CHUNK_SIZE:
        raise ValidationError("max_chunk_size must be at least 1M (%d bytes), not %s" % (MIN_CHUNK_SIZE, value))
    return size


def chunk_key(artifact_key, index):
    """The key of chunk ``index`` (from 1): <artifact>.part0001 and so on, sorting in order."""
    return "%s.part%04d" % (artifact_key, index)


class ChunkedWriter(object):
    """A storage writer that rolls over to a new object every ``max_size`` bytes.

    commit() stores the last chunk; abort() aborts the open one and deletes those already stored,
    so a failed backup leaves no chunk behind.
    """

    def __init__(self, storage, artifact_key, metadata, max_size):
        self.storage = storage
        self.artifact_key = artifact_key
        self.metadata = metadata
        self.max_size = max_size
        self.chunks = []
        self.warnings = []
        self._writer = None
        self._digest = None
        self._size = 0

    def _open(self):
        key = chunk_key(self.artifact_key, len(self.chunks) + 1)
        if self.storage.exists(key):
            raise ValidationError("a backup object named %s already exists; wait a second and run again" % key)
        self._writer = self.storage.open_writer(key, self.metadata, self.max_size)
        self._key = key
        self._digest = hashlib.sha256()
        self._size = 0

    def _close(self):
        self._writer.commit()
        self.chunks.append({"key": self._key, "size": self._size, "sha256": self._digest.hexdigest()})
        self._writer = None

    def write(self, data):
        if self._writer is not None and self._size + len(data) < self.max_size:
            self._writer.write(data)  # the common case: the chunk goes on, no copy
            self._digest.update(data)
            self._size += len(data)
            return
        view = memoryview(data)
        while view:
            if self._writer is None:
                self._open()
            part = view[: self.max_size - self._size]
            self._writer.write(bytes(part))
            self._digest.update(part)
            self._size += len(part)
            view = view[len(part):]
            if self._size == self.max_size:
                self._close()

    def commit(self):
        if self._writer is None and not self.chunks:
            self._open()  # an empty stream is still one (empty) chunk; the stream checks refuse it anyway
        if self._writer is not None:
            self._close()

    def abort(self):
        if self._writer is not None:
            self._writer.abort()
            self.warnings.extend(getattr(self._writer, "warnings", None) or [])
            self._writer = None
        for chunk in self.chunks:
            try:
                self.storage.delete(chunk["key"])
            except Exception as exc:  # report every chunk left behind, keep deleting the others
                self.warnings.append("chunk %s could not be deleted: %s" % (chunk["key"], exc))
        self.chunks = []
