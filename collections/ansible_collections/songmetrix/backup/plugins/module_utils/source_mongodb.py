"""MongoDB source: ``mongodump --archive`` to stdout, the connection string in a 0600 ``--config`` file.

The archive is streamed uncompressed (no ``--gzip``): the pipeline compresses. While it passes,
its structure is followed (mongodb_archive.py): the header gives the server version, and the
documents of every collection are counted for the manifest's table_counts.
"""

import re

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.mongodb_archive import ArchiveCheck
from ansible_collections.songmetrix.backup.plugins.module_utils.mongodb_connection import (
    CONFIG_PLACEHOLDER,
    ConfigFile,
    check_database_name,
    connection_uri,
    tools_version,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import NonEmptyCheck, ProcessProducer
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import Child, child_env, find_tool, last_lines
from ansible_collections.songmetrix.backup.plugins.module_utils.validation import no_control_chars

READ_PREFERENCES = ["primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest"]
NOT_FOR_MONGODB = ("path", "format", "jobs", "include_schemas", "exclude_schemas")
# mongodump logs "<timestamp>\tFailed: <error>"; a --collection that does not exist is logged and exits 0.
FAILED_RE = re.compile(r"^(?:\S+\t)?Failed: .*$", re.MULTILINE)
MISSING_RE = re.compile(r"namespace with DB (.*) and collection (.*) does not exist")


def dump_stderr_problem(text):
    """An error mongodump printed while exiting 0, or None."""
    missing = MISSING_RE.search(text)
    if missing:
        return ("mongodump found no collection %s in database %s (it exits 0 and writes nothing in that case): "
                "check source.include" % (missing.group(2).strip(), missing.group(1).strip()))
    failed = FAILED_RE.search(text)
    if failed:
        return "mongodump reported a failure: %s" % last_lines(failed.group(0))
    return None


def check_collection_name(label, name):
    no_control_chars(label, name)
    if not name or name.startswith("-") or "\x00" in name:
        raise ValidationError("%s %r is not a collection name" % (label, name))
    return name


class _ConfigRemovingProducer(object):
    """The mongodump producer; the config file goes as soon as mongodump has exited."""

    def __init__(self, inner, config):
        self._inner = inner
        self._config = config
        self.stream = inner.stream

    def abort(self):
        self._inner.abort()

    def ended_badly(self, grace=5):
        return self._inner.ended_badly(grace)

    def failure(self):
        try:
            return self._inner.failure()
        finally:
            self._config.remove()


class MongodbSource(object):
    engine = "mongodb"
    extension = "archive"
    format = "archive"

    def __init__(self, params, spool_dir):
        self.params = params
        self.spool_dir = spool_dir
        self.options = params.get("mongodb") or {}
        for key in NOT_FOR_MONGODB:
            if params.get(key) not in (None, "", []):
                raise ValidationError("source.%s is not used by engine mongodb" % key)
        self.database = params.get("database") or None
        check_database_name("source.database", self.database)
        self.include = [check_collection_name("source.include", n) for n in params.get("include") or []]
        self.exclude = [check_collection_name("source.exclude", n) for n in params.get("exclude") or []]
        if (self.include or self.exclude) and not self.database:
            raise ValidationError("source.include and source.exclude name collections of source.database: set it "
                                  "(mongodump selects collections only within one database)")
        if len(self.include) > 1:
            raise ValidationError("mongodump dumps one collection (--collection) or a whole database: source.include "
                                  "takes one collection; to leave collections out, list them in source.exclude "
                                  "(--excludeCollection), or use one job per collection")
        if self.include and self.exclude:
            raise ValidationError("source.include and source.exclude cannot be combined for mongodb (mongodump refuses "
                                  "--collection with --excludeCollection)")
        if self.options.get("oplog") and self.database:
            raise ValidationError("source.mongodb.oplog needs a dump of the whole server: leave source.database unset "
                                  "(mongodump refuses --oplog with --db: '--oplog mode only supported on full dumps')")
        read_preference = self.options.get("read_preference")
        if read_preference and read_preference not in READ_PREFERENCES:
            raise ValidationError("source.mongodb.read_preference must be one of %s" % ", ".join(READ_PREFERENCES))
        auth_database = self.options.get("auth_database")
        no_control_chars("source.mongodb.auth_database", auth_database)
        self.uri = connection_uri(params, "source")  # a secret: never in argv, results or messages
        self.tool = find_tool("mongodump", params.get("executable"), "mongodb-database-tools")
        self.tool_version = None
        self.server_version = None
        self.row_counts = True  # set by the dump plan (the dump module's row_counts option)
        self._check = None
        self._config = None

    def preflight(self):
        """The tool's version only: mongodump has no connect-only mode, so the dump itself connects."""
        self.tool_version = tools_version(self.tool, "mongodump")
        return {"tool_version": self.tool_version, "server_version": None}

    def argv(self):
        return self._argv(CONFIG_PLACEHOLDER)

    def _argv(self, config_path):
        o = self.options
        argv = [self.tool, "--config=%s" % config_path, "--archive"]
        if o.get("auth_database"):
            argv.append("--authenticationDatabase=%s" % o["auth_database"])
        if o.get("read_preference"):
            argv.append("--readPreference=%s" % o["read_preference"])
        if self.database:
            argv.append("--db=%s" % self.database)
        if self.include:
            argv.append("--collection=%s" % self.include[0])
        argv.extend("--excludeCollection=%s" % name for name in self.exclude)
        if o.get("oplog"):
            argv.append("--oplog")
        return argv

    def _header(self, reader):
        self.server_version = reader.server_version()

    def stream_checks(self):
        self._check = ArchiveCheck("mongodump", count=self.row_counts, on_header=self._header)
        return [NonEmptyCheck("mongodump"), self._check]

    def open(self):
        self.close()
        self._config = ConfigFile(self.uri, self.spool_dir)
        try:
            child = Child("mongodump", self._argv(self._config.path), env=child_env())
        except BaseException:
            self.close()
            raise
        return _ConfigRemovingProducer(ProcessProducer(child, stderr_check=dump_stderr_problem), self._config)

    def table_counts(self):
        """{"db.collection": documents} as read from the archive itself; None with row_counts off."""
        if not self.row_counts or self._check is None:
            return None
        return self._check.reader.table_counts()

    def close(self):
        if self._config is not None:
            self._config.remove()
            self._config = None
