"""SQL Server restore target: RESTORE DATABASE through sqlcmd, from a .bak on disk (native) or from S3 (url).

native: the stored .bak is streamed (decompressed, its SHA-256 checked) into a temporary file in
``local_dir``, which SQL Server reads as ``<server_dir>/<same name>``; RESTORE DATABASE runs only
once every stored byte matched the manifest, and the temporary file is always removed.
url (SQL Server 2022+): RESTORE DATABASE ... FROM URL = ... for every stripe of the backup.
An existing target database is refused unless ``force`` (which adds REPLACE).
"""

import datetime
import os
import re
import secrets

from ansible_collections.songmetrix.backup.plugins.module_utils import mssql_tsql as tsql
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.mssql_client import Sqlcmd, major_version
from ansible_collections.songmetrix.backup.plugins.module_utils.mssql_url import IDENTITY, S3Location
from ansible_collections.songmetrix.backup.plugins.module_utils.source_mssql import local_folder

DEFAULTS = dict(recovery=True, checksum=True, trust_server_certificate=False, flavour="auto")
NOT_FOR_MSSQL = ("schemas", "tables", "jobs", "single_transaction", "clean", "create_database", "scratch")


def parse_move(value):
    """[(logical, path)] from a dict {logical: path} or a list of {logical: ..., path: ...}."""
    if value in (None, "", [], {}):
        return []
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = []
        for item in value:
            if not isinstance(item, dict) or set(item) != {"logical", "path"}:
                raise ValidationError("target.mssql.move: each list item must be {logical: <logical file name>, "
                                      "path: <physical path on the SQL Server host>}, not %r" % (item,))
            pairs.append((item["logical"], item["path"]))
    else:
        raise ValidationError("target.mssql.move must be a dict (logical name: path) or a list of "
                              "{logical, path}, not %r" % (value,))
    for logical, path in pairs:
        tsql.literal(logical, "target.mssql.move logical name")
        tsql.literal(path, "target.mssql.move path")
    return [(str(logical), str(path)) for logical, path in pairs]


def _safe(text):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:80]


def moves_from_filelist(output, database, data_dir, log_dir):
    """MOVE pairs for every file RESTORE FILELISTONLY listed: <dir>/<database>_<logical><extension>."""
    moves = []
    for line in output.splitlines():
        parts = line.split("|")
        if len(parts) < 3 or not parts[0].strip() or parts[2].strip() not in ("D", "L", "F", "S"):
            continue
        logical, physical, kind = parts[0].strip(), parts[1].strip(), parts[2].strip()
        base = re.split(r"[\\/]", physical)[-1]
        ext = os.path.splitext(base)[1] or (".ldf" if kind == "L" else ".mdf")
        folder = log_dir if kind == "L" else data_dir
        moves.append((logical, tsql.server_join(folder, "%s_%s%s" % (_safe(database), _safe(logical), ext))))
    if not moves:
        raise BackupError("RESTORE FILELISTONLY listed no files: %s" % output.strip()[-500:])
    return moves


class MssqlTarget(object):
    command = None

    def __init__(self, target, options, record):
        self.target = target
        self.options = options
        self.database = target.get("database")
        if not self.database:
            raise ValidationError("target.database is required for engine mssql")
        tsql.quote_name(self.database, "target.database")
        if target.get("path") or target.get("ssl_mode"):
            raise ValidationError("target.path and target.ssl_mode are not used by engine mssql (use "
                                  "target.mssql.encrypt for TLS)")
        for name in NOT_FOR_MSSQL:
            if options.get(name):
                hint = " (use force: RESTORE ... WITH REPLACE)" if name == "clean" else ""
                raise ValidationError("%s is not available for SQL Server targets%s" % (name, hint))
        if record.get("format") != "bak":
            raise ValidationError("the backup's format %r is not a SQL Server .bak" % (record.get("format"),))
        opts = dict(DEFAULTS)
        opts.update(dict((k, v) for k, v in (target.get("mssql") or {}).items() if v is not None))
        backup_mode = (record.get("mssql") or {}).get("mode") or "native"
        self.mode = opts.get("mode") or backup_mode
        self.opts = opts
        self.moves = parse_move(opts.get("move"))
        if self.moves and (opts.get("data_dir") or opts.get("log_dir")):
            raise ValidationError("target.mssql.move cannot be combined with data_dir or log_dir")
        if opts.get("log_dir") and not opts.get("data_dir"):
            raise ValidationError("target.mssql.log_dir needs data_dir")
        for key in ("data_dir", "log_dir"):
            if opts.get(key):
                tsql.literal(opts[key], "target.mssql.%s" % key)
        self.stripe_keys = [record["artifact"]] + [a["key"] for a in record.get("attachments") or []
                                                   if isinstance(a, dict) and a.get("key")]
        self.location = None
        if self.mode == "native":
            if len(self.stripe_keys) > 1:
                raise ValidationError("the backup is striped over %d objects (BACKUP TO URL): restore it with "
                                      "target.mssql.mode url" % len(self.stripe_keys))
            self.server_dir, self.local_dir = local_folder(opts, "target")
            self.checked_before_visible = True  # RESTORE runs once the whole file matched its SHA-256
        else:
            algorithm = (record.get("compression") or {}).get("algorithm") or "none"
            if algorithm != "none":
                raise ValidationError("the backup was stored %s-compressed: SQL Server cannot RESTORE it FROM URL; "
                                      "use target.mssql.mode native" % algorithm)
            self.location = S3Location(options.get("storage"), opts)
            self.checked_before_visible = False
        self.client = Sqlcmd(target, opts, "target")
        self.command = self.client.argv("<0600 T-SQL file>")
        self.exists = None
        self.warnings = []

    def describe(self):
        t = self.target
        return {"engine": "mssql", "host": t.get("host"), "port": t.get("port"), "user": t.get("user"),
                "database": self.database, "mode": self.mode}

    def _locations(self, server_path=None):
        if self.mode == "native":
            return "DISK", [server_path]
        return "URL", [self.location.url(key) for key in self.stripe_keys]

    def preflight(self):
        self.client.detect()
        if self.mode == "native":
            if not os.path.isdir(self.local_dir) or not os.access(self.local_dir, os.W_OK | os.X_OK):
                raise BackupError("target.mssql.local_dir %s is not a writable folder on this host" % self.local_dir)
        else:
            self.warnings.extend(self.location.warnings)
        found = tsql.parse_probe(self.client.run(tsql.probe_sql(self.database), "connecting to SQL Server"))
        if self.mode == "url" and major_version(found.get("product")) < 16:
            raise BackupError("RESTORE FROM URL (S3) needs SQL Server 2022 (16.x) or later; %s runs %s"
                              % (self.client.where(), found.get("product") or "an unknown version"))
        self.exists = found.get("database") == "present"
        if self.exists and not self.options.get("force"):
            raise BackupError("target database %s exists on %s: set force to replace it (RESTORE ... WITH REPLACE)"
                              % (self.database, self.client.where()))
        actions = []
        if self.mode == "native":
            actions.append("write the backup, decompressed and checked, to a temporary .bak in %s (%s on the "
                           "SQL Server host)" % (self.local_dir, self.server_dir))
        else:
            actions.append("create or update the credential %s" % self.location.credential)
        if self.moves:
            where = ", ".join("%s to %s" % pair for pair in self.moves)
        elif self.opts.get("data_dir"):
            where = "the files listed by RESTORE FILELISTONLY to %s" % self.opts["data_dir"]
            if self.opts.get("log_dir"):
                where += " (logs to %s)" % self.opts["log_dir"]
        else:
            where = None
        kind, locations = self._locations("<temporary .bak>")
        actions.append("RESTORE DATABASE %s FROM %s%s%s%s" % (
            tsql.quote_name(self.database), "%s %s" % (kind, ", ".join(locations)),
            " moving " + where if where else "",
            " WITH REPLACE over the existing database" if self.exists else "",
            "" if self.opts["recovery"] else " WITH NORECOVERY"))
        if self.mode == "native":
            actions.append("remove the temporary .bak")
        return actions

    def prepare(self):
        pass  # RESTORE DATABASE creates the database

    def _moves(self, kind, locations, prefix=""):
        if self.moves or not self.opts.get("data_dir"):
            return self.moves
        out = self.client.run(prefix + tsql.filelist_sql(kind, locations), "RESTORE FILELISTONLY", separator="|")
        return moves_from_filelist(out, self.database, self.opts["data_dir"],
                                   self.opts.get("log_dir") or self.opts["data_dir"])

    def _restore(self, kind, locations, prefix=""):
        sql = tsql.restore_sql(self.database, kind, locations, self._moves(kind, locations, prefix),
                               replace=bool(self.options.get("force")), recovery=self.opts["recovery"],
                               checksum=self.opts["checksum"], stats=self.opts.get("stats"),
                               region=self.location.region if self.location else None)
        self.client.run(prefix + sql, "RESTORE DATABASE %s" % tsql.quote_name(self.database))

    def load(self, read):
        if self.mode == "url":
            prefix = "SET NOCOUNT ON;\n" + tsql.credential_sql(self.location.credential, IDENTITY,
                                                               self.location.secret())
            kind, locations = self._locations()
            try:
                self._restore(kind, locations, prefix)
            except BackupError as exc:
                raise BackupError(self.location.scrub(str(exc)))
            return
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        name = "songmetrix-restore-%s-%s-%s.bak" % (_safe(self.database)[:60], stamp, secrets.token_hex(4))
        local_path = os.path.join(self.local_dir, name)
        server_path = tsql.server_join(self.server_dir, name)
        try:
            # 0640: SQL Server's service account reads it (through the folder's group, on a shared folder).
            fd = os.open(local_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except OSError as exc:
            raise BackupError("cannot create %s: %s" % (local_path, exc.strerror or exc))
        try:
            with os.fdopen(fd, "wb") as handle:
                read(_BakWriter(handle, local_path))
                handle.flush()
                os.fsync(handle.fileno())
            self._restore(*self._locations(server_path))
        finally:
            try:
                os.unlink(local_path)
            except OSError as exc:
                self.warnings.append("could not remove %s: %s" % (local_path, exc.strerror or exc))


class _BakWriter(object):
    def __init__(self, handle, path):
        self.handle = handle
        self.path = path

    def write(self, data):
        try:
            self.handle.write(data)
        except OSError as exc:
            raise BackupError("writing %s failed: %s" % (self.path, exc.strerror or exc))
