"""MongoDB restore target: ``mongorestore --archive`` reading the decompressed stream on stdin.

The connection string goes in a 0600 ``--config`` file, as for mongodump. Whether the target
database is empty is read without a MongoDB driver: ``mongodump --db=<target> --archive`` is
started and only its prelude (the list of the database's collections, written before any
document) is read, then mongodump is stopped. With clean or force that check is skipped.
"""

import os
import re
import subprocess
import tempfile

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.mongodb_archive import ArchiveReader
from ansible_collections.songmetrix.backup.plugins.module_utils.mongodb_connection import (
    CONFIG_PLACEHOLDER,
    ConfigFile,
    check_database_name,
    connection_uri,
    tools_version,
    where,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import Child, child_env, find_tool, last_lines
from ansible_collections.songmetrix.backup.plugins.module_utils.restore_targets import ChildWriter
from ansible_collections.songmetrix.backup.plugins.module_utils.validation import no_control_chars

# mongorestore exits 0 when documents failed to insert (duplicate keys, validation): read its summary.
SUMMARY_RE = re.compile(r"(\d+) document\(s\) restored successfully\. (\d+) document\(s\) failed to restore\.")
NOT_FOR_MONGODB = ("schemas", "tables", "jobs", "single_transaction", "assertions")
PROBE_TIMEOUT = 300


def ns_pattern(database):
    """A mongorestore namespace pattern matching every collection of ``database``."""
    return database.replace("\\", "\\\\").replace("*", "\\*") + ".*"


class RestoreWriter(ChildWriter):
    """ChildWriter for mongorestore: a summary naming failed documents fails the restore, whatever the status."""

    def finish(self):
        ChildWriter.finish(self)
        summary = SUMMARY_RE.findall(self.child.stderr_text())
        if summary and int(summary[-1][1]):
            raise BackupError("mongorestore could not restore %s document(s) (%s restored): %s" % (
                summary[-1][1], summary[-1][0], last_lines(self.child.stderr_text())))


class MongodbTarget(object):
    checked_before_visible = False

    def __init__(self, target, options, record):
        if options.get("scratch"):
            raise ValidationError("scratch restore tests are not available for mongodb: counting documents in a "
                                  "throw-away database needs a MongoDB driver or shell; restore into a database of "
                                  "your own and check it, see docs/engines/mongodb.md")
        self.target = target
        self.options = options
        if target.get("path"):
            raise ValidationError("target.path is not used by engine mongodb (use target.database)")
        for key in NOT_FOR_MONGODB:
            if options.get(key):
                raise ValidationError("%s is not available for mongodb targets" % key)
        if record.get("format") != "archive":
            raise ValidationError("the backup's format %r is not a mongodump archive" % (record.get("format"),))
        self.source_database = check_database_name("the backup's database", record.get("database") or None)
        self.database = check_database_name("target.database", target.get("database") or self.source_database)
        if target.get("database") and not self.source_database:
            raise ValidationError("the backup holds the whole server (every database): leave target.database unset, "
                                  "each database is restored under its own name")
        self.mongo = target.get("mongodb") or {}
        no_control_chars("target.mongodb.auth_database", self.mongo.get("auth_database"))
        self.uri = connection_uri(target, "target")  # a secret: never in argv, results or messages
        self.tool = find_tool("mongorestore", target.get("executable"), "mongodb-database-tools")
        self.spool_dir = options.get("spool_dir") or tempfile.gettempdir()
        self.exists = None
        self.warnings = []
        self.command = self._argv(CONFIG_PLACEHOLDER)

    def describe(self):
        t = self.target
        return {"engine": "mongodb", "host": t.get("host") or where(t).split(",")[0], "port": t.get("port"),
                "user": t.get("user"), "database": self.database}

    def _where(self):
        return "%s/%s" % (where(self.target), self.database or "")

    def _auth(self):
        if self.mongo.get("auth_database"):
            return ["--authenticationDatabase=%s" % self.mongo["auth_database"]]
        return []

    def _argv(self, config_path):
        argv = [self.tool, "--config=%s" % config_path, "--archive"] + self._auth()
        if self.options.get("clean"):
            argv.append("--drop")
        if self.mongo.get("oplog_replay"):
            argv.append("--oplogReplay")
        if self.source_database:
            argv.append("--nsInclude=%s" % ns_pattern(self.source_database))
            if self.database != self.source_database:
                argv += ["--nsFrom=%s" % ns_pattern(self.source_database), "--nsTo=%s" % ns_pattern(self.database)]
        return argv

    def preflight(self):
        tools_version(self.tool, "mongorestore")
        clean, force = self.options.get("clean"), self.options.get("force")
        if not self.source_database:
            if not (clean or force):
                raise BackupError("the backup holds the whole server: restoring it over %s needs clean (drop each "
                                  "collection of the backup first) or force" % where(self.target))
            return ["restore every database of the archive into %s%s" % (
                where(self.target), ", dropping each collection of the backup first" if clean else "")]
        if clean:
            return ["restore database %s into %s, dropping each collection of the backup before restoring it "
                    "(mongorestore --drop); collections not in the backup are left alone"
                    % (self.source_database, self._where())]
        if force:
            return ["restore database %s into %s without checking whether it is empty (force); documents whose "
                    "_id exists already fail the restore" % (self.source_database, self._where())]
        collections = self.collections()
        if collections:
            raise BackupError("target database %s is not empty (%d collections or views, such as %s): set clean or "
                              "force to restore over it" % (self._where(), len(collections), collections[0]))
        return ["restore database %s into the empty database %s" % (self.source_database, self._where())]

    def collections(self):
        """The target database's collections and views (not system.*), from mongodump's archive prelude."""
        sibling = os.path.join(os.path.dirname(self.tool), "mongodump")
        dump = sibling if os.access(sibling, os.X_OK) else find_tool(
            "mongodump", package_hint="mongodb-database-tools (used to check that the target database is empty; "
            "or set clean or force)")
        reader = ArchiveReader("prelude")
        with ConfigFile(self.uri, self.spool_dir) as config:
            argv = [dump, config.option(), "--archive"] + self._auth() + ["--db=%s" % self.database]
            child = Child("mongodump", argv, env=child_env(), stdin=subprocess.DEVNULL)
            try:
                while not reader.stopped:
                    chunk = child.stdout.read1(65536) if hasattr(child.stdout, "read1") else child.stdout.read(65536)
                    if not chunk:
                        break
                    reader.feed(chunk)
            finally:
                if reader.prelude_done:
                    child.kill()  # the prelude is all we need: stop before it reads any document
                child.stdout.close()
                try:
                    rc = child.wait(timeout=PROBE_TIMEOUT)
                except subprocess.TimeoutExpired:
                    child.kill()
                    rc = child.wait()
        if not reader.prelude_done:
            problem = child.failure(rc) or reader.incomplete() or "no archive prelude"
            raise BackupError("checking that target database %s is empty failed: %s (the check reads the "
                              "database's collection list with mongodump; set clean or force to skip it)"
                              % (self._where(), problem))
        return [ns.split(".", 1)[1] for ns in reader.collections
                if not ns.split(".", 1)[1].startswith("system.")]

    def prepare(self):
        pass  # MongoDB creates the database with its first collection

    def load(self, read):
        with ConfigFile(self.uri, self.spool_dir) as config:
            child = Child("mongorestore", self._argv(config.path), env=child_env(), stdin=subprocess.PIPE,
                          stdout=subprocess.DEVNULL)
            read(RestoreWriter(child))
