"""SQLite source: a consistent online copy through SQLite's backup API.

The backup API needs a database file as its destination, so the copy is made in the spool
directory (mode 0600), streamed, and removed: the one full-size temporary file this collection
makes, and documented as such. The copy is taken in one step, under one read transaction, so
it is consistent even while another process writes.
"""

import os
import sqlite3

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover
    from urllib import quote

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.private_files import (
    create_private_file, remove_private_file)
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import (
    CHUNK_SIZE,
    HeadCheck,
    NonEmptyCheck,
    ThreadProducer,
)

SQLITE_MAGIC = b"SQLite format 3\x00"


class SqliteSource(object):
    engine = "sqlite"
    extension = "sqlite3"

    def __init__(self, params, spool_dir):
        self.path = params.get("path")
        self.spool_dir = spool_dir
        if not self.path:
            raise ValidationError("source.path (the database file) is required for engine sqlite")
        for key in ("host", "port", "user", "password", "database", "format", "jobs", "include", "exclude"):
            if params.get(key):
                raise ValidationError("source.%s is not used by engine sqlite (use source.path)" % key)
        self.database = self.path
        self.tool_version = "sqlite %s" % sqlite3.sqlite_version
        self.server_version = None
        self.row_counts = True  # set by the dump plan (the dump module's row_counts option)
        self._counts = None

    def _connect(self):
        uri = "file:%s?mode=ro" % quote(os.path.abspath(self.path))
        return sqlite3.connect(uri, uri=True, timeout=60)

    def preflight(self):
        if not os.path.isfile(self.path):
            raise ValidationError("SQLite database %s does not exist or is not a file" % self.path)
        try:
            with open(self.path, "rb") as handle:
                head = handle.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise ValidationError("cannot read SQLite database %s: %s" % (self.path, exc.strerror))
        if head != SQLITE_MAGIC:
            raise ValidationError("%s is not a SQLite 3 database" % self.path)
        try:
            conn = self._connect()
            try:
                conn.execute("PRAGMA schema_version").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise BackupError("cannot open SQLite database %s: %s" % (self.path, exc))
        return {"tool_version": self.tool_version, "server_version": None}

    def argv(self):
        return None

    def stream_checks(self):
        return [NonEmptyCheck("SQLite backup"), HeadCheck(SQLITE_MAGIC, "SQLite backup")]

    def open(self):
        return ThreadProducer("SQLite backup", self._copy_and_stream)

    def table_counts(self):
        """{"table": rows} of the streamed copy (after the stream ended); None with row_counts off."""
        return self._counts if self.row_counts else None

    def _copy_and_stream(self, out):
        self._counts = None
        fd, copy_path = create_private_file(self.spool_dir, "sqlite-copy", ".sqlite3")
        os.close(fd)
        try:
            try:
                source = self._connect()
                target = sqlite3.connect(copy_path)
                try:
                    source.backup(target)  # pages=-1: one step, one consistent snapshot
                    problem = target.execute("PRAGMA quick_check").fetchone()[0]
                    if problem == "ok" and self.row_counts:
                        self._counts = _count_rows(target)  # in the copy: exactly what is streamed
                finally:
                    target.close()
                    source.close()
            except sqlite3.Error as exc:
                raise BackupError("SQLite backup of %s failed: %s" % (self.path, exc))
            if problem != "ok":
                raise BackupError("SQLite backup of %s failed its integrity check: %s" % (self.path, problem))
            with open(copy_path, "rb") as handle:
                while True:
                    chunk = handle.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    out.write(chunk)
        finally:
            remove_private_file(copy_path)


def _count_rows(conn):
    """Rows of every table but SQLite's own and virtual ones (whose shadow tables are counted)."""
    names = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name"
    )]
    return {name: conn.execute('SELECT count(*) FROM "%s"' % name.replace('"', '""')).fetchone()[0] for name in names}
