"""The pg_restore that can read a backup: one at least as new as the pg_dump that wrote it.

pg_dump may be newer than the server it dumps (that is how a server older than the client is
backed up), and its custom and directory archives then carry a format version that an older
pg_restore refuses ("unsupported version (1.15) in file header"). Verify (deep) and restore choose
their pg_restore here, before reading anything, and name what to install when none will do.
"""

import glob
import os
import re

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import child_env, find_tool, run_capture

# Where a second client major lives beside the one on PATH: Debian/Ubuntu, then PGDG's RPMs.
CLIENT_DIR_PATTERNS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin")
PG_DUMP_VERSION_RE = re.compile(r"pg_dump \(PostgreSQL\) ((\d+)[0-9.]*)")  # (version, major)
TOOL_VERSION_RE = re.compile(r"\(PostgreSQL\) (\d+)")
ARCHIVE_FORMATS = ("custom", "directory")


def dump_version(record):
    """(major, text) of the pg_dump that wrote a custom or directory archive; None otherwise."""
    if record.get("format") not in ARCHIVE_FORMATS:
        return None
    match = PG_DUMP_VERSION_RE.search(record.get("tool_version") or "")
    if not match:
        return None
    return int(match.group(2)), match.group(1)


def tool_major(path):
    """The major version a PostgreSQL client tool prints, or None when it says none."""
    rc, out, _err = run_capture(os.path.basename(path), [path, "--version"], env=child_env())
    match = TOOL_VERSION_RE.search(out) if rc == 0 else None
    return int(match.group(1)) if match else None


def _installed_majors():
    """[(major, bin dir)] of the client majors installed in the usual places, newest first."""
    found = []
    for pattern in CLIENT_DIR_PATTERNS:
        for directory in glob.glob(pattern):
            match = re.search(r"(\d+)$", os.path.dirname(directory))  # .../postgresql/16/bin, /usr/pgsql-16/bin
            if match and os.access(os.path.join(directory, "pg_restore"), os.X_OK):
                found.append((int(match.group(1)), directory))
    return sorted(found, reverse=True)


def pg_restore_for(record, executable=None, option=None):
    """Path of a pg_restore that reads ``record``'s artifact; ValidationError naming the fix if none.

    ``executable`` (the user's choice, given by ``option``) is used as it is when new enough;
    without it, PATH first, then the newest client major installed beside it.
    """
    path = find_tool("pg_restore", executable, "postgresql-client")
    wanted = dump_version(record)
    if wanted is None:
        return path
    need, written_by = wanted
    have = tool_major(path)
    if have is None or have >= need:
        return path
    if executable:
        fix = ", and set %s to its pg_restore" % option
    else:
        for major, directory in _installed_majors():
            if major >= need:
                return os.path.join(directory, "pg_restore")
        fix = ", or set %s to its pg_restore" % option if option else ", or put its bin directory first on PATH"
    raise ValidationError(
        "this backup was written by pg_dump %s; pg_restore %d (%s) cannot read its archive: install "
        "postgresql-client-%d (or newer)%s" % (written_by, have, path, need, fix))
