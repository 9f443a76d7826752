"""What Supabase manages in a project's database, and how its connection string is read.

The lists follow the Supabase CLI's own split of ``supabase db dump`` (schema, data, roles):
schemas the platform or its extensions own are left out of the user's dump, their data is dumped
for auth, storage and supabase_functions only (migration history excluded), and reserved roles
are never created or altered by a roles dump.
"""

import re
from urllib.parse import parse_qsl, unquote, urlsplit

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

# Schemas Supabase (or an extension it installs) owns: pg_dump --exclude-schema patterns.
MANAGED_SCHEMAS = (
    "_analytics", "_realtime", "_supavisor", "auth", "extensions", "pgbouncer", "realtime", "storage",
    "supabase_functions", "supabase_migrations", "vault", "pgsodium", "pgsodium_masks", "graphql", "graphql_public",
    "net", "cron", "dbdev", "pgmq", "pgtle", "repack", "tiger", "tiger_data", "timescaledb_*", "_timescaledb_*",
    "topology",
)
# Managed schemas whose rows belong to the project (users, bucket and object records, hooks).
MANAGED_DATA_SCHEMAS = ("auth", "storage", "supabase_functions")
# ... but not the platform's migration history: a new project brings its own.
MANAGED_DATA_EXCLUDED_TABLES = ("auth.schema_migrations", "storage.migrations", "supabase_functions.migrations")
# Roles the platform creates; a roles dump never creates or alters them (supautils refuses it).
RESERVED_ROLES = frozenset((
    "anon", "authenticated", "authenticator", "dashboard_user", "pgbouncer", "postgres", "service_role",
    "supabase_admin", "supabase_auth_admin", "supabase_functions_admin", "supabase_read_only_user",
    "supabase_realtime_admin", "supabase_replication_admin", "supabase_storage_admin", "supabase_etl_admin",
    "pgsodium_keyholder", "pgsodium_keyiduser", "pgsodium_keymaker", "pgtle_admin",
))
TRANSACTION_POOLER_PORT = 6543
CONNECTION_QUERY_KEYS = {"sslmode": "ssl_mode", "connect_timeout": "connect_timeout"}
CONNECTION_KEYS = ("host", "port", "user", "password", "database")


def managed_schema_regex():
    """A PostgreSQL regular expression matching the managed schema names (patterns' '*' as '.*')."""
    names = [re.escape(name).replace("\\*", ".*") for name in MANAGED_SCHEMAS]
    return "^(%s)$" % "|".join(names)


def parse_connection_string(text, where):
    """{host, port, user, password, database, ssl_mode?, connect_timeout?} of a postgresql:// URI."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValidationError("%s is not a valid postgresql:// URI: %s" % (where, exc))
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValidationError("%s must start with postgresql:// (Supabase: Connect > Connection string)" % where)
    if not parts.hostname:
        raise ValidationError("%s names no host" % where)
    found = {
        "host": parts.hostname,
        "port": port,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "database": unquote(parts.path.lstrip("/")) or "postgres",
    }
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in CONNECTION_QUERY_KEYS:
            raise ValidationError("%s: the parameter %r is not supported (only %s)"
                                  % (where, name, ", ".join(sorted(CONNECTION_QUERY_KEYS))))
        found[CONNECTION_QUERY_KEYS[name]] = value
    if found.get("connect_timeout") is not None:
        if not str(found["connect_timeout"]).isdigit():
            raise ValidationError("%s: connect_timeout must be a number of seconds" % where)
        found["connect_timeout"] = int(found["connect_timeout"])
    return found


def resolve_connection(params, opts, where="source"):
    """The connection options of a Supabase source or target: from source.supabase.connection_string or from
    host/port/user/password/database; ssl_mode defaults to require."""
    resolved = dict((name, params.get(name)) for name in CONNECTION_KEYS + ("ssl_mode", "connect_timeout"))
    uri = opts.get("connection_string")
    if uri:
        given = [name for name in CONNECTION_KEYS if params.get(name) not in (None, "")]
        if given:
            raise ValidationError("%s.supabase.connection_string cannot be combined with %s" % (
                where, ", ".join("%s.%s" % (where, name) for name in given)))
        parsed = parse_connection_string(uri, "%s.supabase.connection_string" % where)
        if parsed.get("ssl_mode") and params.get("ssl_mode") and parsed["ssl_mode"] != params["ssl_mode"]:
            raise ValidationError("%s.ssl_mode %s contradicts sslmode=%s in the connection string"
                                  % (where, params["ssl_mode"], parsed["ssl_mode"]))
        for name, value in parsed.items():
            if value is not None and resolved.get(name) in (None, ""):
                resolved[name] = value
    if not resolved.get("host"):
        raise ValidationError("%s.host (or %s.supabase.connection_string) is required for engine supabase: the "
                              "project's direct host db.<ref>.supabase.co or its session pooler host" % (where, where))
    if not resolved.get("database"):
        resolved["database"] = "postgres"
    if not resolved.get("ssl_mode"):
        resolved["ssl_mode"] = "require"
    if str(resolved.get("port")) == str(TRANSACTION_POOLER_PORT) and "pooler.supabase." in resolved["host"]:
        raise ValidationError("port %d of %s is Supabase's transaction pooler, where pg_dump cannot work (no "
                              "session state, no snapshots): use the session pooler (port 5432) or the direct "
                              "connection" % (TRANSACTION_POOLER_PORT, resolved["host"]))
    return resolved


_ROLE_LINE_RE = re.compile(r'^(?:CREATE|ALTER) ROLE "((?:[^"]|"")+)"')
_GRANT_TO_RE = re.compile(r'^GRANT "(?:[^"]|"")+" TO "((?:[^"]|"")+)"')
_GRANTED_BY_RE = re.compile(r' GRANTED BY "((?:[^"]|"")+)"')


def _unquote_ident(text):
    return text.replace('""', '"')


def filter_role_line(line):
    """One line of ``pg_dumpall --roles-only --quote-all-identifiers`` as the roles attachment keeps it.

    CREATE/ALTER ROLE of a reserved role and membership grants TO a reserved role are commented
    out (a Supabase project has them, and refuses to change them); GRANTED BY a reserved role is
    dropped from a grant (only the platform could replay it).
    """
    match = _ROLE_LINE_RE.match(line) or _GRANT_TO_RE.match(line)
    if match and _unquote_ident(match.group(1)) in RESERVED_ROLES:
        return "-- Supabase-reserved, skipped: " + line
    match = _GRANTED_BY_RE.search(line)
    if match and _unquote_ident(match.group(1)) in RESERVED_ROLES:
        return line[:match.start()] + line[match.end():]
    return line
