"""Supabase source: the project's PostgreSQL through pg_dump, split the way the Supabase CLI splits it.

The artifact is the user's schemas and their data (pg_dump of everything but the managed
schemas, through PostgresqlSource). Beside it, as attachments of the same backup (keys sharing
the manifest's stem, each through the job's compression and encryption, hashed and stored in the
same storage), come:

  roles            pg_dumpall --roles-only --no-role-passwords, reserved roles commented out
  managed-schema   pg_dump --schema-only of the managed schemas present (auth, storage, ...)
  managed-data     pg_dump --data-only of auth, storage and supabase_functions (no migration history)
  storage-object   each object of the chosen Storage buckets (supabase_storage.py)

The dumps of the artifact and of the managed schemas read one exported snapshot. A roles or
managed-schema dump the connection has no rights for (a pooler user, a restricted role) is
skipped with a warning, unless source.supabase.require_attachments is set.
"""

import os

from ansible_collections.songmetrix.backup.plugins.module_utils import supabase_preset as preset
from ansible_collections.songmetrix.backup.plugins.module_utils.encryption import extension as encryption_extension
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, StorageError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import (
    NonEmptyCheck,
    ProcessProducer,
    ThreadProducer,
    stream,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import Child, find_tool, run_capture
from ansible_collections.songmetrix.backup.plugins.module_utils.source_postgresql import (
    PostgresqlSource,
    SnapshotSession,
    _clean_tool_error,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.supabase_storage import SupabaseBuckets

DEFAULTS = dict(roles=True, managed_schemas=True, managed_data=True, require_attachments=False)


def supabase_options(params):
    opts = dict(DEFAULTS)
    opts.update(dict((k, v) for k, v in (params.get("supabase") or {}).items() if v is not None))
    return opts


class SupabaseSource(PostgresqlSource):
    engine = "supabase"

    def __init__(self, params, spool_dir):
        self.opts = supabase_options(params)
        connection = preset.resolve_connection(params, self.opts)
        merged = dict(params)
        merged.update(connection)
        merged["exclude_schemas"] = list(preset.MANAGED_SCHEMAS) + list(params.get("exclude_schemas") or [])
        PostgresqlSource.__init__(self, merged, spool_dir)
        sibling = os.path.join(os.path.dirname(self.pg_dump), "pg_dumpall")
        self.pg_dumpall = sibling if os.access(sibling, os.X_OK) else None
        if self.opts["roles"] and self.pg_dumpall is None:
            self.pg_dumpall = find_tool("pg_dumpall", package_hint="postgresql-client")
        self.buckets = SupabaseBuckets(self.opts) if self.opts.get("storage_buckets") else None
        for name in ("storage_endpoint", "storage_access_key", "storage_secret_key", "storage_region"):
            if self.opts.get(name) and self.buckets is None:
                raise ValidationError("source.supabase.%s is only used with source.supabase.storage_buckets" % name)
        self.warnings = []
        self.managed = []  # managed schemas present and readable (preflight)
        self._snapshot = None
        self._storage = None
        self._written = []

    # -- checks, nothing written

    def preflight(self):
        found = PostgresqlSource.preflight(self)
        if self.opts["managed_schemas"] or self.opts["managed_data"]:
            self.managed, unreadable = self._managed_schemas()
            if unreadable:
                self._skip("the managed schema(s) %s cannot be read by %s and are left out of the managed-schema "
                           "and managed-data attachments" % (", ".join(unreadable), self.params.get("user")
                                                             or "this user"))
        if self.buckets is not None:
            found["storage_buckets"] = self.buckets.preflight()
        return found

    def _managed_schemas(self):
        query = ("SELECT nspname || '|' || has_schema_privilege(oid, 'USAGE')::text FROM pg_namespace "
                 "WHERE nspname ~ '%s' ORDER BY nspname" % preset.managed_schema_regex())
        rc, out, err = run_capture(
            "psql", [self.psql, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "-c", query],
            env=self._env(), timeout=int(self.params.get("connect_timeout") or 30) + 30)
        if rc != 0:
            raise BackupError("listing the Supabase-managed schemas at %s failed: %s"
                              % (self._where(), _clean_tool_error(err)))
        readable, unreadable = [], []
        for line in out.splitlines():
            name, _sep, usage = line.strip().rpartition("|")
            if name:
                (readable if usage == "true" else unreadable).append(name)
        return readable, unreadable

    def _skip(self, message):
        """An attachment that cannot be made: a warning, or the backup's failure with require_attachments."""
        if self.opts["require_attachments"]:
            raise BackupError("%s (source.supabase.require_attachments is set)" % message)
        self.warnings.append(message)

    # -- the artifact: PostgresqlSource's dump of the user schemas, in a snapshot the attachments share

    def open(self):
        if self.row_counts:
            producer = PostgresqlSource.open(self)
            self._snapshot = self._session.snapshot
            return producer
        self.close()
        self._session = SnapshotSession(self.psql, self._env())
        snapshot = self._snapshot = self._session.snapshot
        if self.format == "directory":
            return ThreadProducer("pg_dump directory", lambda out: self._dump_directory_as_tar(out, snapshot))
        return ProcessProducer(Child("pg_dump", self._argv(snapshot=snapshot), env=self._env()),
                               stderr_check=self._stderr_failure)

    def table_counts(self):
        counts = PostgresqlSource.table_counts(self)
        return counts if self.row_counts else None

    # -- attachments

    def _plain_dump_argv(self, *options):
        argv = [self.pg_dump, "--format=plain", "--no-password", "--quote-all-identifiers"]
        if self._snapshot:
            argv.append("--snapshot=%s" % self._snapshot)
        return argv + self.connection_args() + list(options) + ["--dbname=%s" % self.database]

    def managed_schema_argv(self):
        return self._plain_dump_argv("--schema-only", *["--schema=%s" % name for name in self.managed])

    def managed_data_argv(self):
        schemas = [name for name in self.managed if name in preset.MANAGED_DATA_SCHEMAS]
        options = ["--data-only"] + ["--schema=%s" % name for name in schemas]
        options += ["--exclude-table=%s" % name for name in preset.MANAGED_DATA_EXCLUDED_TABLES]
        return self._plain_dump_argv(*options) if schemas else None

    def roles_argv(self):
        argv = [self.pg_dumpall, "--roles-only", "--no-role-passwords", "--quote-all-identifiers", "--no-password"]
        return argv + self.connection_args() + ["--database=%s" % self.database]

    def _roles_producer(self):
        argv = self.roles_argv()
        env = self._env()

        def produce(out):
            child = Child("pg_dumpall", argv, env=env)
            try:
                for line in child.stdout:
                    out.write(preset.filter_role_line(line.decode("utf-8", errors="surrogateescape"))
                              .encode("utf-8", errors="surrogateescape"))
            except BaseException:
                child.kill()
                child.wait()
                raise
            rc = child.wait()
            message = child.failure(rc) or self._stderr_failure(child.stderr_text())
            if message:
                raise BackupError(message.replace("pg_dump reported", "pg_dumpall reported"))

        return ThreadProducer("pg_dumpall --roles-only", produce)

    def store_attachments(self, plan, storage, stem, metadata):
        """backup.py calls this after the artifact's stream, while the snapshot lives: [attachment dicts]."""
        self._storage = storage
        suffix = plan.extension()[len(self.extension):]
        attachments = []
        if self.opts["roles"]:
            self._attach(attachments, plan, storage, metadata, "roles", stem + ".roles.sql" + suffix,
                         self._roles_producer)
        if self.opts["managed_schemas"]:
            if self.managed:
                argv = self.managed_schema_argv()
                self._attach(attachments, plan, storage, metadata, "managed-schema",
                             stem + ".managed-schema.sql" + suffix, lambda: self._dump_producer(argv))
            else:
                self._skip("no Supabase-managed schema was found or readable: no managed-schema attachment")
        if self.opts["managed_data"] and self.managed:
            argv = self.managed_data_argv()
            if argv is not None:
                self._attach(attachments, plan, storage, metadata, "managed-data",
                             stem + ".managed-data.sql" + suffix, lambda: self._dump_producer(argv))
        if self.buckets is not None:
            encryption = plan.encryptor.transform if plan.encryptor else None
            # Storage objects are mostly media, already compressed: encrypted when the job encrypts, never recompressed.
            attachments.extend(self.buckets.copy_into(
                storage, stem, metadata, [encryption] if encryption else [],
                _encryption_suffix(plan), self._written))
        return attachments

    def _dump_producer(self, argv):
        return ProcessProducer(Child("pg_dump", argv, env=self._env()), stderr_check=self._stderr_failure)

    def _attach(self, attachments, plan, storage, metadata, role, key, producer_factory):
        writer = storage.open_writer(key, metadata)
        try:
            outcome = stream(producer_factory(), plan.transforms(), writer, [NonEmptyCheck(role)])
            writer.commit()
        except StorageError:
            writer.abort()
            raise
        except BackupError as exc:
            writer.abort()
            self._skip("the %s attachment was skipped: %s" % (role, exc))
            return
        except BaseException:
            writer.abort()
            raise
        self._written.append(key)
        attachments.append({"key": key, "size": outcome.stored_size, "sha256": outcome.sha256, "role": role,
                            "raw_size": outcome.raw_size})

    def after_store(self, stored):
        """backup.py calls this once the manifest is stored (True) or the backup failed (False)."""
        keys, self._written = self._written, []
        if self.buckets is not None:
            self.buckets.close()
        if stored or not keys:
            return
        try:
            failures = self._storage.delete_many(keys)
        except BackupError as exc:
            failures = [(None, str(exc))]
        for key, message in failures:
            self.warnings.append("could not remove %s after the failure: %s" % (key or "attachments", message))

    def argv(self):
        """The artifact's pg_dump command line (no secret: the password is in PGPASSWORD)."""
        return PostgresqlSource.argv(self)


def _encryption_suffix(plan):
    return "." + encryption_extension(plan.encryption) if plan.encryption else ""
