"""T-SQL text for the SQL Server engine: quoting, and the few statements the engine runs.

Every name goes through quote_name() ([name] with ] doubled) and every string through literal()
(N'...' with ' doubled), so a database name cannot end a statement or start another one. Values
with line breaks or NUL are refused before they get here (sqlcmd reads commands such as ``:r``
and ``GO`` at the start of a line; a value on one line cannot start one).
"""

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

MARK = "songmetrix:"  # prefix of the lines our probes print, so other output cannot be mistaken for them


def _check(label, value):
    text = str(value)
    if not text:
        raise ValidationError("%s must not be empty" % label)
    if any(ch in text for ch in ("\x00", "\n", "\r")):
        raise ValidationError("%s must not contain NUL or line breaks" % label)
    return text


def quote_name(name, label="name"):
    """A T-SQL identifier: [name] with every ] doubled."""
    text = _check(label, name)
    # sysname is nvarchar(128): 128 UTF-16 code units, so a character beyond U+FFFF counts twice.
    if len(text.encode("utf-16-le")) // 2 > 128:
        raise ValidationError("%s is longer than 128 characters (SQL Server's limit for names, counted in UTF-16 "
                              "code units)" % label)
    return "[%s]" % text.replace("]", "]]")


def literal(value, label="value"):
    """A T-SQL Unicode string literal: N'...' with every ' doubled."""
    return "N'%s'" % _check(label, value).replace("'", "''")


def ascii_literal(value, label="value"):
    """A T-SQL varchar literal ('...' with ' doubled), for options SQL Server wants as varchar."""
    return "'%s'" % _check(label, value).replace("'", "''")


def server_join(directory, name):
    """``directory``/``name`` in the path style of the SQL Server host (backslashes for C:\\..., else /)."""
    sep = "\\" if ("\\" in directory and "/" not in directory) or directory[1:3] == ":\\" else "/"
    return directory.rstrip("/\\") + sep + name


def probe_sql(database=None):
    """The server's version (first line of @@VERSION), product version and whether ``database`` exists."""
    lines = [
        "SET NOCOUNT ON;",
        "SELECT N'%sversion=' + LEFT(@@VERSION, CHARINDEX(CHAR(10), @@VERSION + CHAR(10)) - 1);" % MARK,
        "SELECT N'%sproduct=' + CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128));" % MARK,
    ]
    if database is not None:
        lines.append("SELECT N'%sdatabase=' + CASE WHEN DB_ID(%s) IS NULL THEN N'missing' ELSE N'present' END;"
                     % (MARK, literal(database, "database")))
    return "\n".join(lines) + "\n"


def parse_probe(text):
    """{key: value} from the lines probe_sql() makes the server print."""
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(MARK) and "=" in line:
            key, _sep, value = line[len(MARK):].partition("=")
            found[key] = value.strip()
    return found


def _with(options):
    return (" WITH " + ", ".join(options)) if options else ""


def backup_options(opts, url=False, max_transfer_size=None):
    """The WITH options of a BACKUP DATABASE, in a fixed order (the tests compare the text)."""
    options = []
    if opts.get("copy_only", True):
        options.append("COPY_ONLY")
    if opts.get("compression", True):
        options.append("COMPRESSION")
    options.append("CHECKSUM" if opts.get("checksum", True) else "NO_CHECKSUM")
    if not url:
        if opts.get("init", True):
            options.append("INIT")
        if opts.get("format", True):
            options.append("FORMAT")
    else:
        options.append("FORMAT")  # the keys are new; FORMAT lets SQL Server overwrite a leftover of a failed run
        if max_transfer_size:
            options.append("MAXTRANSFERSIZE = %d" % int(max_transfer_size))
    if opts.get("stats"):
        options.append("STATS = %d" % int(opts["stats"]))
    return options


def backup_disk_sql(database, server_path, opts):
    return "SET NOCOUNT ON;\nBACKUP DATABASE %s TO DISK = %s%s;\n" % (
        quote_name(database, "source.database"), literal(server_path, "backup path"), _with(backup_options(opts)))


def devices(kind, locations):
    return ", ".join("%s = %s" % (kind, literal(loc, "backup location")) for loc in locations)


def verify_sql(kind, locations, checksum=True):
    """RESTORE VERIFYONLY of a backup set (WITH CHECKSUM when it was taken with checksums)."""
    return "SET NOCOUNT ON;\nRESTORE VERIFYONLY FROM %s%s;\n" % (
        devices(kind, locations), _with(["CHECKSUM"] if checksum else []))


def credential_sql(name, identity, secret):
    """Create the server credential ``name``, or update it when it exists (the secret may have changed)."""
    quoted = quote_name(name, "credential name")
    body = "WITH IDENTITY = %s, SECRET = %s" % (ascii_literal(identity, "identity"), literal(secret, "secret"))
    return (
        "IF EXISTS (SELECT 1 FROM sys.credentials WHERE name = %s)\n"
        "    ALTER CREDENTIAL %s %s;\n"
        "ELSE\n"
        "    CREATE CREDENTIAL %s %s;\n" % (literal(name, "credential name"), quoted, body, quoted, body)
    )


def backup_url_sql(database, urls, opts, region=None, max_transfer_size=None):
    options = backup_options(opts, url=True, max_transfer_size=max_transfer_size)
    if region:
        options.append("BACKUP_OPTIONS = %s" % ascii_literal('{"s3": {"region": "%s"}}' % region, "region"))
    name = quote_name(database, "source.database")
    return "BACKUP DATABASE %s TO %s%s;\n" % (name, devices("URL", urls), _with(options))


def filelist_sql(kind, locations):
    return "SET NOCOUNT ON;\nRESTORE FILELISTONLY FROM %s;\n" % devices(kind, locations)


def restore_sql(database, kind, locations, moves=(), replace=False, recovery=True, checksum=True, region=None,
                stats=None):
    """RESTORE DATABASE [database] FROM ... WITH MOVE ..., [REPLACE,] RECOVERY|NORECOVERY."""
    options = ["MOVE %s TO %s" % (literal(logical, "logical file name"), literal(path, "file path"))
               for logical, path in moves]
    if checksum:
        options.append("CHECKSUM")
    if replace:
        options.append("REPLACE")
    options.append("RECOVERY" if recovery else "NORECOVERY")
    if stats:
        options.append("STATS = %d" % int(stats))
    if region:
        options.append("RESTORE_OPTIONS = %s" % ascii_literal('{"s3": {"region": "%s"}}' % region, "region"))
    return "SET NOCOUNT ON;\nRESTORE DATABASE %s FROM %s%s;\n" % (
        quote_name(database, "target.database"), devices(kind, locations), _with(options))
