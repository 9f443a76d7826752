"""Pick the source implementation for ``source.engine``.

A source has: engine, database, extension, tool_version, server_version; preflight()
(connect and read versions, raising on any problem), argv() (the dump command, for check mode),
stream_checks() and open() (a pipeline producer).
"""

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

ENGINES = ("postgresql", "mysql", "mariadb", "sqlite", "files", "mongodb", "mssql", "supabase")


def make_source(params, spool_dir):
    engine = params.get("engine")
    if engine == "postgresql":
        from ansible_collections.songmetrix.backup.plugins.module_utils.source_postgresql import PostgresqlSource

        return PostgresqlSource(params, spool_dir)
    if engine in ("mysql", "mariadb"):
        from ansible_collections.songmetrix.backup.plugins.module_utils.source_mysql import MysqlSource

        return MysqlSource(params, spool_dir, engine)
    if engine == "sqlite":
        from ansible_collections.songmetrix.backup.plugins.module_utils.source_sqlite import SqliteSource

        return SqliteSource(params, spool_dir)
    if engine == "files":
        from ansible_collections.songmetrix.backup.plugins.module_utils.source_files import FilesSource

        return FilesSource(params, spool_dir)
    if engine == "mongodb":
        from ansible_collections.songmetrix.backup.plugins.module_utils.source_mongodb import MongodbSource

        return MongodbSource(params, spool_dir)
    if engine == "mssql":
        from ansible_collections.songmetrix.backup.plugins.module_utils.source_mssql import MssqlSource

        return MssqlSource(params, spool_dir)
    if engine == "supabase":
        from ansible_collections.songmetrix.backup.plugins.module_utils.source_supabase import SupabaseSource

        return SupabaseSource(params, spool_dir)
    raise ValidationError("source.engine must be one of %s, not %r" % (", ".join(ENGINES), engine))
