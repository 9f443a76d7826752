"""Small files on the host (state, metrics) replaced atomically: readers see the old or the new
content, never a partial one, and the new content survives a crash once this returns."""

import os
import tempfile


def write_atomically(path, data, mode):
    """Write ``data`` (bytes) to ``path`` through a temp file in the same folder: fsync, chmod
    ``mode``, rename over ``path``, fsync the folder. Raises OSError; the temp file never stays."""
    folder = os.path.dirname(path) or "."
    fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
