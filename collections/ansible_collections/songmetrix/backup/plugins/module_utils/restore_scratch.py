"""Restore test (scratch: true): restore into a throw-away database, file or folder, count and compare, remove.

PostgreSQL and MySQL/MariaDB restore into a new database named
``<database>_restore_test_<UTC stamp>`` (cut to the engine's identifier limit), SQLite into a
temporary file and files into a temporary folder (under spool_dir or the system's temporary
folder). The rows of every table are counted exactly (count(*)) and compared with the manifest's
``table_counts``; ``assertions`` (SQL returning one row with one true value) run in the scratch
database. The scratch is removed at the end, on failure too, unless keep_scratch.
"""

import json
import os
import shutil
import sqlite3
import tempfile
import time

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.private_files import create_private_dir
from ansible_collections.songmetrix.backup.plugins.module_utils.source_mysql import _unescape_batch

NAME_LIMITS = {"postgresql": 63, "mysql": 64, "mariadb": 64}
PG_COUNT_ALL = (
    "SELECT coalesce(json_object_agg(n.nspname || '.' || c.relname, "
    "(xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM ONLY %I.%I', n.nspname, c.relname), "
    "false, true, '')))[1]::text::bigint), '{}') "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%';\n"
)
TRUE_VALUES = {"postgresql": ("t", "true"), "mysql": ("1",), "mariadb": ("1",)}


def scratch_name(base, engine, now=None):
    """``<base>_restore_test_<YYYYmmddHHMMSS>``, the base cut so the name fits the engine's limit."""
    suffix = "_restore_test_" + time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    limit = NAME_LIMITS[engine]
    if engine == "postgresql":  # NAMEDATALEN counts bytes
        while base and len((base + suffix).encode("utf-8")) > limit:
            base = base[:-1]
    else:
        base = base[: limit - len(suffix)]
    return base + suffix


def check_options(params):
    if not params.get("scratch"):
        if params.get("keep_scratch"):
            raise ValidationError("keep_scratch needs scratch: true")
        if params.get("assertions"):
            raise ValidationError("assertions need scratch: true")
        return
    for name in ("clean", "force"):
        if params.get(name):
            raise ValidationError("%s cannot be combined with scratch (the restore test creates its own "
                                  "database, file or folder)" % name)
    for name in ("schemas", "tables"):
        if params.get(name):
            raise ValidationError("%s cannot be combined with scratch: the restore test compares every table "
                                  "with the manifest" % name)
    assertions = params.get("assertions") or []
    if assertions and params["target"].get("engine") not in NAME_LIMITS:
        raise ValidationError("assertions need a postgresql, mysql or mariadb target")
    for sql in assertions:
        if not sql or not sql.strip():
            raise ValidationError("an assertion is empty")


class Scratch(object):
    """Holds the scratch's name and place; ``target_params``/``options`` are what make_target is given."""

    def __init__(self, params, record, check_mode):
        self.params = params
        self.engine = params["target"]["engine"]
        self.check_mode = check_mode
        self.tempdir = None
        self.created = False
        target = dict(params["target"])
        options = dict(params)
        if self.engine in NAME_LIMITS:
            base = target.get("database") or record.get("database")
            if not base:
                raise ValidationError("scratch needs target.database or a database name in the manifest")
            self.name = scratch_name(base, self.engine)
            target["database"] = self.name
            options["create_database"] = True
        else:
            if target.get("path"):
                raise ValidationError("target.path is not used with scratch: the restore test writes to a "
                                      "temporary %s" % ("file" if self.engine == "sqlite" else "folder"))
            base = params.get("spool_dir") or tempfile.gettempdir()
            if check_mode:
                self.tempdir = None
                parent = base
            else:
                self.tempdir = create_private_dir(base, "restore-test")
                parent = self.tempdir
            leaf = "restore-test.sqlite3" if self.engine == "sqlite" else "tree"
            target["path"] = os.path.join(parent, "songmetrix-restore-test-" + leaf if check_mode else leaf)
            self.name = target["path"]
        self.target_params = target
        self.options = options

    def drop(self, target):
        """Removes the scratch; True when it is gone."""
        if self.engine in NAME_LIMITS:
            if not self.created:
                return True
            if self.engine == "postgresql":
                sql = 'DROP DATABASE IF EXISTS :"dbname" WITH (FORCE);\n'
                target._psql(sql, "postgres", "dropping the scratch database")
            else:
                target._sql("DROP DATABASE IF EXISTS `%s`;\n" % self.name.replace("`", "``"),
                            "dropping the scratch database")
            return True
        if self.tempdir:
            shutil.rmtree(self.tempdir, ignore_errors=True)
            return not os.path.exists(self.tempdir)
        return True


def count_tables(scratch, target):
    engine = scratch.engine
    if engine == "postgresql":
        out = target._psql(PG_COUNT_ALL, scratch.name, "counting the rows of the scratch database")
        return dict((k, int(v)) for k, v in json.loads(out or "{}").items())
    if engine in ("mysql", "mariadb"):
        db = scratch.name.replace("'", "''").replace("\\", "\\\\")
        lines = target._sql("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '%s' "
                            "AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME;\n" % db,
                            "listing the tables of the scratch database").splitlines()
        names = [_unescape_batch(line) for line in lines if line]
        if not names:
            return {}
        quoted = "`%s`" % scratch.name.replace("`", "``")
        sql = "\nUNION ALL ".join("SELECT %d, COUNT(*) FROM %s.`%s`" % (i, quoted, n.replace("`", "``"))
                                  for i, n in enumerate(names)) + ";\n"
        counts = {}
        for line in target._sql(sql, "counting the rows of the scratch database").splitlines():
            index, dummy, count = line.partition("\t")
            counts[names[int(index)]] = int(count)
        return counts
    if engine == "sqlite":
        conn = sqlite3.connect("file:%s?mode=ro" % scratch.name, uri=True)
        try:
            names = [row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                "AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name")]
            return dict((n, conn.execute('SELECT count(*) FROM "%s"' % n.replace('"', '""')).fetchone()[0])
                        for n in names)
        finally:
            conn.close()
    return None


def compare(expected, actual):
    """[{table, expected, actual, ok}] over both sides' tables, sorted."""
    rows = []
    if expected is None:
        for table in sorted(actual):
            rows.append({"table": table, "expected": None, "actual": actual[table], "ok": None})
        return rows
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        rows.append({"table": table, "expected": want, "actual": got,
                     "ok": want is not None and got is not None and int(want) == int(got)})
    return rows


def run_assertions(scratch, target, assertions):
    results = []
    for sql in assertions or []:
        entry = {"sql": sql, "ok": False}
        try:
            if scratch.engine == "postgresql":
                out = target._psql(sql.rstrip().rstrip(";") + ";\n", scratch.name, "assertion")
            else:
                out = target._sql("USE `%s`;\n%s;\n" % (scratch.name.replace("`", "``"), sql.rstrip().rstrip(";")),
                                  "assertion")
            lines = out.splitlines()
            entry["result"] = out
            entry["ok"] = len(lines) == 1 and lines[0].strip().lower() in TRUE_VALUES[scratch.engine]
        except BackupError as exc:
            entry["error"] = str(exc)
        results.append(entry)
    return results


def tree_size(path):
    files = total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            if os.path.isfile(full) and not os.path.islink(full):
                files += 1
                total += os.path.getsize(full)
    return files, total


def run_test(scratch, target, record, params, warnings):
    """The restore_test report; ``ok`` False when a table or an assertion failed."""
    report = {"scratch": scratch.name, "dropped": False, "tables": [], "assertions": [], "ok": False}
    if scratch.engine == "files":
        report["files"], report["bytes"] = tree_size(scratch.name)
        report["ok"] = True
        return report
    actual = count_tables(scratch, target)
    expected = record.get("table_counts")
    report["tables"] = compare(expected, actual)
    if expected is None:
        warnings.append("the manifest has no table_counts (row_counts was off): the restored tables were counted "
                        "but not compared")
    report["assertions"] = run_assertions(scratch, target, params.get("assertions"))
    report["ok"] = all(row["ok"] is not False for row in report["tables"]) and \
        all(entry["ok"] for entry in report["assertions"])
    return report


def failure_message(report):
    parts = []
    for row in report["tables"]:
        if row["ok"] is False:
            if row["expected"] is None:
                parts.append("table %s is not in the manifest (%s rows restored)" % (row["table"], row["actual"]))
            elif row["actual"] is None:
                parts.append("table %s (%s rows in the manifest) is missing" % (row["table"], row["expected"]))
            else:
                parts.append("table %s has %s rows, the manifest says %s"
                             % (row["table"], row["actual"], row["expected"]))
    for entry in report["assertions"]:
        if not entry["ok"]:
            parts.append("assertion failed: %s%s" % (entry["sql"], " (%s)" % entry["error"] if entry.get("error")
                                                     else " (returned %r)" % entry.get("result", "")))
    return "restore test failed: " + "; ".join(parts)
