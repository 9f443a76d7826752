"""Restore target for Supabase backups (target.engine supabase): the PostgreSQL target, plus attachments.

The artifact (the user's schemas and data) is restored by PostgresqlTarget (pg_restore / psql).
Before it, on request (target.supabase), the SQL attachments are applied with psql in this order:
roles, managed-schema (for a plain PostgreSQL target, not a Supabase project: a project has
these schemas), managed-data (auth users, storage records). Each attachment is read once,
checked against its own SHA-256, decrypted and decompressed like the artifact, and fed to a
psql in restricted mode (psql_sandbox): a meta-command planted in it fails the restore instead
of running.

A target database "is empty" when it has no relation outside the Supabase-managed schemas: a
new Supabase project already has auth.users and friends.
"""

import re
import subprocess

from ansible_collections.songmetrix.backup.plugins.module_utils import supabase_preset as preset
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import Child, last_lines
from ansible_collections.songmetrix.backup.plugins.module_utils.psql_sandbox import RestrictedScript
from ansible_collections.songmetrix.backup.plugins.module_utils.restore_targets import (
    PG_USER_RELATIONS,
    ChildWriter,
    PostgresqlTarget,
    _conninfo,
    capped,
)

# Applied in this order, each only when asked for.
ATTACHMENT_OPTIONS = (("roles", "roles"), ("managed_schema", "managed-schema"), ("managed_data", "managed-data"))
_PSQL_ERROR_RE = re.compile(r"^(?:psql:[^\n]*?)?ERROR:\s+(.*)$", re.MULTILINE)
_ROLE_EXISTS_RE = re.compile(r'^role "(?:[^"]|"")+" already exists$')


class _RolesWriter(ChildWriter):
    """psql applying the roles attachment: a role that exists already is not an error, any other error is."""

    def finish(self):
        message = self._failure()
        if message:
            raise BackupError(message)
        errors = [e.strip() for e in _PSQL_ERROR_RE.findall(self.child.stderr_text())]
        other = [e for e in errors if not _ROLE_EXISTS_RE.match(e)]
        if other:
            raise BackupError("restoring the roles failed: %s" % "; ".join(other[:5]))


class SupabaseTarget(PostgresqlTarget):
    user_relations_sql = PG_USER_RELATIONS.replace(
        ";\n", " AND n.nspname !~ '%s';\n" % preset.managed_schema_regex())

    def __init__(self, target, options, record):
        opts = dict((k, v) for k, v in (target.get("supabase") or {}).items() if v is not None)
        merged = dict(target)
        merged.update(preset.resolve_connection(target, opts, "target"))
        self.apply = []
        present = dict((item.get("role"), item) for item in record.get("attachments") or []
                       if isinstance(item, dict))
        for option, role in ATTACHMENT_OPTIONS:
            if not opts.get(option):
                continue
            if record.get("engine") != "supabase":
                raise ValidationError("target.supabase.%s needs a backup of engine supabase, not %r"
                                      % (option, record.get("engine")))
            if role not in present:
                raise ValidationError("target.supabase.%s: this backup has no %s attachment (it was skipped or "
                                      "turned off when the backup was taken)" % (option, role))
            self.apply.append(present[role])
        PostgresqlTarget.__init__(self, merged, options, record)
        if self.apply and self.format != "plain":  # a plain artifact's psql is checked already
            self.sandbox_psql()
        self.warnings = []

    def preflight(self):
        actions = PostgresqlTarget.preflight(self)
        return ["apply the %s attachment with psql" % item["role"] for item in self.apply] + actions

    def load_attachments(self, open_item):
        """Apply the requested SQL attachments, each read through ``open_item(item)`` -> read(writer)."""
        for item in self.apply:
            argv = [self.psql, "-X", "-q", "--no-password", "-d", _conninfo(self.database)]
            if item["role"] != "roles":
                argv[2:2] = ["-v", "ON_ERROR_STOP=1", "--single-transaction"]
            child = Child("psql (%s)" % item["role"], argv, env=self._env(), stdin=subprocess.PIPE,
                          stdout=subprocess.DEVNULL)
            writer = _RolesWriter(child) if item["role"] == "roles" else ChildWriter(child)
            try:
                open_item(item)(capped(RestrictedScript(writer), self.options))
            except BackupError as exc:
                raise BackupError("applying the %s attachment %s: %s"
                                  % (item["role"], item["key"], last_lines(str(exc))))
