"""SQL Server source: BACKUP DATABASE through sqlcmd, to a .bak on disk (native) or to S3 (url).

native: SQL Server writes ``<server_dir>/<name>.bak`` (a folder on the database host, or a share
mounted there), RESTORE VERIFYONLY checks it, and the module reads the same file as
``<local_dir>/<name>.bak`` into the pipeline (compress, hash, store, manifest); the .bak is
removed after the manifest is stored, and after a failure.

url (SQL Server 2022+): SQL Server writes the backup straight into the job's S3 storage, striped
over ``stripes`` objects; the module then reads every object back to record its size and
SHA-256, and writes the manifest last, like any other backup.
"""

import datetime
import os
import re
import secrets

from ansible_collections.songmetrix.backup.plugins.module_utils import mssql_tsql as tsql
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.integrity import read_digest
from ansible_collections.songmetrix.backup.plugins.module_utils.mssql_client import Sqlcmd, major_version
from ansible_collections.songmetrix.backup.plugins.module_utils.mssql_url import (
    IDENTITY,
    S3Location,
    check_stripes,
    stripe_keys,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import HeadCheck, NonEmptyCheck, StreamResult
from ansible_collections.songmetrix.backup.plugins.module_utils.source_localfile import FileProducer

MODES = ("native", "url")
# Options of the generic source dict that mean nothing for SQL Server.
NOT_FOR_MSSQL = ("path", "include", "exclude", "include_schemas", "exclude_schemas", "format", "jobs", "ssl_mode")
DEFAULTS = dict(mode="native", copy_only=True, compression=True, checksum=True, init=True, format=True, verify=True,
                remove_bak=True, stripes=1, trust_server_certificate=False, flavour="auto",
                max_transfer_size=20971520)
BAK_MAGIC = b"TAPE"  # a .bak is a Microsoft Tape Format stream; it starts with the TAPE descriptor block


def mssql_options(params, where):
    """The ``mssql`` sub-dict with defaults applied (Ansible leaves it None when not given)."""
    opts = dict(DEFAULTS)
    opts.update(dict((k, v) for k, v in (params.get("mssql") or {}).items() if v is not None))
    if opts["mode"] not in MODES:
        raise ValidationError("%s.mssql.mode must be native or url, not %r" % (where, opts["mode"]))
    return opts


def bak_name(database):
    """A file name that says what it is and cannot collide: songmetrix-<db>-<UTC stamp>-<random>.bak."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", database)[:60]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return "songmetrix-%s-%s-%s.bak" % (safe, stamp, secrets.token_hex(4))


def local_folder(opts, where):
    """(server_dir, local_dir) of native mode, checked: local_dir defaults to server_dir."""
    server_dir = opts.get("server_dir")
    if not server_dir:
        raise ValidationError("%s.mssql.server_dir (the folder SQL Server writes the .bak to) is required in "
                              "native mode" % where)
    tsql.literal(server_dir, "%s.mssql.server_dir" % where)
    local_dir = opts.get("local_dir") or server_dir
    if not os.path.isabs(local_dir):
        raise ValidationError("%s.mssql.local_dir must be an absolute path on this host, not %r (set it when "
                              "server_dir is a path of another host)" % (where, local_dir))
    return server_dir, local_dir


class MssqlSource(object):
    engine = "mssql"
    extension = "bak"
    format = "bak"

    def __init__(self, params, spool_dir):
        del spool_dir  # nothing is spooled: SQL Server writes the .bak itself
        self.params = params
        self.database = params.get("database")
        if not self.database:
            raise ValidationError("source.database is required for engine mssql")
        tsql.quote_name(self.database, "source.database")
        for key in NOT_FOR_MSSQL:
            if params.get(key) not in (None, "", []):
                hint = " (use source.mssql.encrypt)" if key == "ssl_mode" else ""
                raise ValidationError("source.%s is not used by engine mssql%s" % (key, hint))
        self.opts = mssql_options(params, "source")
        self.mode = self.opts["mode"]
        self.stores_itself = self.mode == "url"  # backup.py: the source writes its objects into the storage
        self.stripes = check_stripes(self.opts.get("stripes"))
        if self.mode == "native":
            if self.stripes != 1:
                raise ValidationError("source.mssql.stripes is for url mode only")
            self.server_dir, self.local_dir = local_folder(self.opts, "source")
        elif self.opts.get("server_dir") or self.opts.get("local_dir"):
            raise ValidationError("source.mssql.server_dir and local_dir are for native mode only")
        self.client = Sqlcmd(params, self.opts, "source")
        self.storage_params = None  # set by the dump plan: url mode writes into the job's storage
        self.tool_version = None
        self.server_version = None
        self.product_version = None
        self.warnings = []
        self._bak = None  # the local path of the .bak of this run (native)
        self._written_keys = []  # the objects SQL Server wrote (url)
        self._location = None
        self._storage = None

    def _where(self):
        return "%s/%s" % (self.client.where(), self.database)

    # -- checks, nothing written

    def preflight(self):
        self.tool_version = self.client.detect()
        if self.mode == "url":
            self._location = S3Location(self.storage_params, self.opts)
            self.warnings.extend(self._location.warnings)
        else:
            if not os.path.isdir(self.local_dir):
                raise ValidationError("source.mssql.local_dir %s is not a folder on this host" % self.local_dir)
            if not os.access(self.local_dir, os.R_OK | os.X_OK):
                raise ValidationError("source.mssql.local_dir %s cannot be read by this user" % self.local_dir)
        found = tsql.parse_probe(self.client.run(tsql.probe_sql(self.database), "connecting to SQL Server"))
        self.server_version = found.get("version")
        self.product_version = found.get("product")
        if found.get("database") != "present":
            raise BackupError("database %s does not exist on %s" % (self.database, self.client.where()))
        if self.mode == "url" and major_version(self.product_version) < 16:
            raise BackupError("source.mssql.mode url needs SQL Server 2022 (16.x) or later (BACKUP TO URL for "
                              "S3); %s runs %s" % (self.client.where(), self.product_version or "an unknown version"))
        return {"tool_version": self.tool_version, "server_version": self.server_version}

    def argv(self):
        """The sqlcmd command line (the T-SQL goes in a 0600 file given with -i; no secret in argv)."""
        return self.client.argv("<0600 T-SQL file>")

    def stream_checks(self):
        return [NonEmptyCheck("the .bak"), HeadCheck(BAK_MAGIC, "the .bak")]

    # -- native

    def open(self):
        """Run BACKUP DATABASE TO DISK and RESTORE VERIFYONLY, then read the .bak (a pipeline producer)."""
        name = bak_name(self.database)
        server_path = tsql.server_join(self.server_dir, name)
        self._bak = os.path.join(self.local_dir, name)
        self.client.run(tsql.backup_disk_sql(self.database, server_path, self.opts), "BACKUP DATABASE %s"
                        % tsql.quote_name(self.database))
        if self.opts["verify"]:
            self.client.run(tsql.verify_sql("DISK", [server_path], self.opts["checksum"]),
                            "RESTORE VERIFYONLY of %s" % server_path)
        if not os.path.isfile(self._bak):
            raise BackupError("SQL Server wrote %s, but %s does not exist on this host: source.mssql.local_dir must "
                              "be the folder source.mssql.server_dir seen from here (the module cannot remove "
                              "that .bak; delete it on the SQL Server host)" % (server_path, self._bak))
        return FileProducer(self._bak)

    def after_store(self, stored):
        """backup.py calls this once the manifest is stored (stored=True) or the backup failed (False)."""
        if self._bak is not None:
            path, self._bak = self._bak, None
            if self.opts["remove_bak"] and os.path.lexists(path):
                try:
                    os.unlink(path)
                except OSError as exc:
                    self.warnings.append("could not remove %s: %s" % (path, exc.strerror or exc))
            elif stored and not self.opts["remove_bak"]:
                self.warnings.append("remove_bak is false: %s was kept" % path)
        if self._written_keys and not stored:
            keys, self._written_keys = self._written_keys, []
            for key in keys:
                try:
                    self._storage.delete(key)
                except BackupError as exc:
                    self.warnings.append("could not remove %s after the failure: %s" % (key, exc))
        self._written_keys = []

    # -- url

    def store_into(self, storage, artifact_key, metadata):
        """BACKUP DATABASE TO URL into ``storage``; (StreamResult of the first object, extra manifest fields)."""
        del metadata  # SQL Server writes the objects; it cannot set S3 user metadata
        if getattr(storage, "type", None) != "s3":
            raise BackupError("source.mssql.mode url writes into the S3 storage only; it cannot write to %s"
                              % storage.location(artifact_key))
        location = self._location
        keys = stripe_keys(artifact_key, self.stripes)
        for key in keys:
            if storage.exists(key):
                raise BackupError("a backup named %s already exists; wait a second and run again" % key)
        urls = [location.url(key) for key in keys]
        self._storage = storage
        self._written_keys = list(keys)
        sql = "SET NOCOUNT ON;\n" + tsql.credential_sql(location.credential, IDENTITY, location.secret())
        sql += tsql.backup_url_sql(self.database, urls, self.opts, location.region,
                                   self.opts.get("max_transfer_size"))
        try:
            self.client.run(sql, "BACKUP DATABASE %s TO URL" % tsql.quote_name(self.database))
            if self.opts["verify"]:
                self.client.run(tsql.verify_sql("URL", urls, self.opts["checksum"]), "RESTORE VERIFYONLY FROM URL")
        except BackupError as exc:
            raise BackupError(location.scrub(str(exc)))
        digests = []
        for key in keys:
            if not storage.exists(key):
                raise BackupError("SQL Server reported success, but %s is not in the storage: does "
                                  "source.mssql.s3_endpoint name the same storage as storage.endpoint_url?"
                                  % storage.location(key))
            digests.append(read_digest(storage, key))
        total = sum(size for size, _sha in digests)
        outcome = StreamResult(total, digests[0][0], digests[0][1])
        extra = {"artifact": keys[0], "mssql": {"mode": "url", "stripes": self.stripes,
                                                "credential": location.credential}}
        if self.stripes > 1:
            extra["attachments"] = [{"key": key, "size": size, "sha256": sha, "role": "stripe"}
                                    for key, (size, sha) in zip(keys[1:], digests[1:])]
        return outcome, extra
