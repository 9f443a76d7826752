"""engine: supabase against the real local PostgreSQL, with a Supabase-like layout made by the test.

The layout: managed schemas auth (users), storage (buckets, objects), extensions, supabase_migrations;
the user's public schema with tables referencing auth.users; Supabase's reserved roles (anon,
authenticated, service_role, supabase_admin, authenticator) and an app role of the test's own.
"""

import json
import os
import subprocess
import uuid

import pytest

from engine_helpers import cmdline, decompress_cmd, start_module, stored_files, wait_for_child

RESERVED = ["anon", "authenticated", "service_role", "supabase_admin", "authenticator"]

LAYOUT = """
CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text NOT NULL, raw_app_meta_data jsonb);
CREATE TABLE auth.schema_migrations (version text PRIMARY KEY);
INSERT INTO auth.schema_migrations VALUES ('20240101');
INSERT INTO auth.users SELECT ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid,
       'user' || g || '@example.com', jsonb_build_object('provider', 'email') FROM generate_series(1, 25) g;
CREATE SCHEMA storage;
CREATE TABLE storage.buckets (id text PRIMARY KEY, name text NOT NULL, public boolean DEFAULT false);
CREATE TABLE storage.objects (id uuid PRIMARY KEY, bucket_id text REFERENCES storage.buckets, name text);
CREATE TABLE storage.migrations (id int PRIMARY KEY, name text);
INSERT INTO storage.buckets VALUES ('avatars', 'avatars', true);
INSERT INTO storage.objects VALUES ('10000000-0000-0000-0000-000000000001', 'avatars', 'u1/face.png');
INSERT INTO storage.migrations VALUES (1, 'create-migrations-table');
CREATE SCHEMA extensions;
CREATE FUNCTION extensions.sm_marker() RETURNS int LANGUAGE sql AS 'SELECT 42';
CREATE SCHEMA supabase_migrations;
CREATE TABLE supabase_migrations.schema_migrations (version text PRIMARY KEY);
INSERT INTO supabase_migrations.schema_migrations VALUES ('20250101000000');
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
CREATE TABLE public.profiles (id uuid PRIMARY KEY REFERENCES auth.users (id), username text UNIQUE, bio text);
INSERT INTO public.profiles SELECT id, 'name-' || substr(email, 1, 6), repeat('ü', 3) FROM auth.users;
CREATE TABLE public.posts (id bigserial PRIMARY KEY, author uuid REFERENCES public.profiles (id), body text,
                           created timestamptz DEFAULT '2026-01-01');
INSERT INTO public.posts (author, body) SELECT p.id, 'post ' || g FROM public.profiles p, generate_series(1, 40) g;
CREATE SCHEMA app;
CREATE TABLE app.settings (key text PRIMARY KEY, value jsonb);
INSERT INTO app.settings VALUES ('theme', '"dark"'), ('limit', '10');
ALTER TABLE public.posts ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_all ON public.posts FOR SELECT TO anon USING (true);
"""

KEYS = dict(storage_access_key="AKIDEXAMPLE", storage_secret_key="wJalrXUtnFEMIEXAMPLEKEY")
USER_TABLES = ["public.profiles", "public.posts", "app.settings"]


def table_digest(pg, dbname, table):
    sql = "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM %s t" % table
    return pg.psql(sql, dbname=dbname).strip()


@pytest.fixture(scope="module")
def supabase_roles(pg_server):
    """Supabase's reserved roles (cluster-wide, created once) and an app role of this module's own."""
    for role in RESERVED:
        pg_server.psql("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%s') THEN "
                       "CREATE ROLE %s NOLOGIN; END IF; END $$;" % (role, role))
    app = "sm_app_" + uuid.uuid4().hex[:8]
    pg_server.psql("CREATE ROLE %s LOGIN CONNECTION LIMIT 7; GRANT anon TO %s; GRANT %s TO authenticated;"
                   % (app, app, app))
    yield app
    pg_server.psql("DROP ROLE IF EXISTS %s" % app)


@pytest.fixture
def project(pg_server, supabase_roles):
    """A database laid out like a Supabase project; its name."""
    name = "supa_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    pg_server.psql(LAYOUT + "GRANT SELECT ON public.posts TO %s;" % supabase_roles, dbname=name)
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def fresh_db(pg_server):
    name = "supa_restored_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    yield name
    pg_server.drop_database(name)


def supabase_source(pg, database, **supabase):
    source = dict(engine="supabase", host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                  database=database, ssl_mode="disable")
    if supabase:
        source["supabase"] = supabase
    return source


def read_attachment(root, item):
    out = subprocess.run(decompress_cmd(os.path.join(root, item["key"])), check=True, stdout=subprocess.PIPE)
    return out.stdout.decode("utf-8")


def executable_lines(sql):
    return [line for line in sql.splitlines() if line.strip() and not line.startswith("--")]


def by_role(record):
    return dict((item["role"], item) for item in record["attachments"])


def test_backup_splits_user_schemas_from_managed_ones(pg_server, project, supabase_roles, run_module, tmp_path):
    root = str(tmp_path / "store")
    res = run_module("dump", dict(job="supa", source=supabase_source(pg_server, project), storage=dict(path=root)))
    assert res.rc == 0, res.describe()
    record = res.result["manifest"]
    assert record["engine"] == "supabase" and record["format"] == "custom"
    assert not res.result.get("warnings")
    stem = res.result["manifest_key"][: -len(".manifest.json")]

    # The artifact: the user's schemas and data, nothing managed.
    listing = subprocess.run([pg_server.tool("pg_restore"), "--list"], check=True, stdout=subprocess.PIPE,
                             input=subprocess.run(decompress_cmd(os.path.join(root, record["artifact"])),
                                                  check=True, stdout=subprocess.PIPE).stdout).stdout.decode()
    for wanted in ("TABLE public profiles", "TABLE public posts", "TABLE app settings", "TABLE DATA public posts",
                   "POLICY public posts read_all"):
        assert wanted in listing, wanted
    for schema in ("auth", "storage", "extensions", "supabase_migrations"):
        assert " %s " % schema not in listing.replace("SCHEMA - %s" % schema, ""), schema
    assert sorted(record["table_counts"]) == ["app.settings", "public.posts", "public.profiles"]
    assert record["table_counts"]["public.posts"] == 1000

    # The attachments: same stem, verified by their own sha256.
    items = by_role(record)
    assert sorted(items) == ["managed-data", "managed-schema", "roles"]
    for item in items.values():
        assert item["key"].startswith(stem + ".") and item["key"].endswith(".sql.zst")
        assert subprocess.run(["sha256sum", os.path.join(root, item["key"])], check=True,
                              stdout=subprocess.PIPE).stdout.decode().split()[0] == item["sha256"]
        assert os.path.getsize(os.path.join(root, item["key"])) == item["size"]

    roles = read_attachment(root, items["roles"])
    live = "\n".join(executable_lines(roles))
    assert 'CREATE ROLE "%s"' % supabase_roles in live
    assert 'GRANT "anon" TO "%s"' % supabase_roles in live
    for role in RESERVED:
        assert 'CREATE ROLE "%s"' % role not in live and 'ALTER ROLE "%s"' % role not in live, role
        assert "-- Supabase-reserved, skipped: CREATE ROLE \"%s\"" % role in roles
    assert 'GRANT "%s" TO "authenticated"' % supabase_roles not in live
    assert "PASSWORD" not in live

    schema_sql = read_attachment(root, items["managed-schema"])
    assert 'CREATE TABLE "auth"."users"' in schema_sql
    assert 'CREATE TABLE "storage"."objects"' in schema_sql
    assert 'CREATE FUNCTION "extensions"."sm_marker"()' in schema_sql
    assert "public" not in [line.split('"')[1] for line in schema_sql.splitlines() if line.startswith("CREATE TABLE")]
    assert "COPY " not in schema_sql

    data_sql = read_attachment(root, items["managed-data"])
    assert 'COPY "auth"."users"' in data_sql and "user25@example.com" in data_sql
    assert 'COPY "storage"."objects"' in data_sql and "u1/face.png" in data_sql
    assert "schema_migrations" not in data_sql and "create-migrations-table" not in data_sql

    ok = run_module("verify", dict(manifest_key=res.result["manifest_key"], storage=dict(path=root), deep=True))
    assert ok.rc == 0, ok.describe()
    assert ok.result["backups"][0]["checked_bytes"] == record["stored_size"] + sum(
        item["size"] for item in record["attachments"])

    # A flipped byte in an attachment is named by verify.
    path = os.path.join(root, items["roles"]["key"])
    with open(path, "r+b") as handle:
        handle.seek(5)
        byte = handle.read(1)
        handle.seek(5)
        handle.write(bytes([byte[0] ^ 1]))
    bad = run_module("verify", dict(manifest_key=res.result["manifest_key"], storage=dict(path=root)))
    assert bad.rc == 1
    assert "attachment %s has SHA-256" % items["roles"]["key"] in bad.result["msg"]


def test_restore_with_attachments_into_a_fresh_database_is_exact(pg_server, project, fresh_db, run_module,
                                                                  tmp_path):
    root = str(tmp_path / "store")
    res = run_module("dump", dict(job="supa-restore", source=supabase_source(pg_server, project),
                                  storage=dict(path=root), compression="gzip"))
    assert res.rc == 0, res.describe()
    target = dict(engine="supabase", host=pg_server.host, port=pg_server.port, user=pg_server.user,
                  password=pg_server.password, database=fresh_db, ssl_mode="disable",
                  supabase=dict(roles=True, managed_schema=True, managed_data=True))
    check = run_module("restore", dict(manifest_key=res.result["manifest_key"], storage=dict(path=root),
                                       target=target), check_mode=True)
    assert check.rc == 0, check.describe()
    assert check.result["actions"][:3] == ["apply the roles attachment with psql",
                                           "apply the managed-schema attachment with psql",
                                           "apply the managed-data attachment with psql"]
    assert pg_server.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'auth'", dbname=fresh_db) == "0"

    done = run_module("restore", dict(manifest_key=res.result["manifest_key"], storage=dict(path=root),
                                      target=target))
    assert done.rc == 0, done.describe()
    for table in USER_TABLES + ["auth.users", "storage.objects"]:
        assert table_digest(pg_server, fresh_db, table) == table_digest(pg_server, project, table), table
    # Migration history is not data of the project: not restored.
    assert pg_server.psql("SELECT count(*) FROM auth.schema_migrations", dbname=fresh_db) == "0"
    assert pg_server.psql("SELECT count(*) FROM pg_policies WHERE policyname = 'read_all'", dbname=fresh_db) == "1"


def test_restore_of_main_artifact_only_into_a_project_like_target(pg_server, project, fresh_db, run_module, tmp_path):
    """A new Supabase project has auth etc. already: it counts as empty, and only the artifact is loaded."""
    root = str(tmp_path / "store")
    res = run_module("dump", dict(job="supa-plain", source=supabase_source(pg_server, project, roles=False,
                                                                           managed_schemas=False,
                                                                           managed_data=False),
                                  storage=dict(path=root), row_counts=False))
    assert res.rc == 0, res.describe()
    assert res.result["manifest"]["attachments"] == []
    assert res.result["manifest"]["table_counts"] is None
    pg_server.psql("CREATE SCHEMA auth; CREATE TABLE auth.users (id uuid PRIMARY KEY, email text NOT NULL, "
                   "raw_app_meta_data jsonb);", dbname=fresh_db)
    users = pg_server.psql("SELECT string_agg(format('(%L,%L)', id, email), ',') FROM auth.users", dbname=project)
    pg_server.psql("INSERT INTO auth.users (id, email) VALUES %s" % users, dbname=fresh_db)
    target = dict(engine="supabase", host=pg_server.host, port=pg_server.port, user=pg_server.user,
                  password=pg_server.password, database=fresh_db, ssl_mode="disable")
    done = run_module("restore", dict(manifest_key=res.result["manifest_key"], storage=dict(path=root),
                                      target=target))
    assert done.rc == 0, done.describe()
    for table in USER_TABLES:
        assert table_digest(pg_server, fresh_db, table) == table_digest(pg_server, project, table), table
    # Asking for an attachment the backup does not have fails before anything is written.
    again = run_module("restore", dict(manifest_key=res.result["manifest_key"], storage=dict(path=root),
                                       target=dict(target, supabase=dict(roles=True)), clean=True))
    assert again.rc == 1
    assert "this backup has no roles attachment" in again.result["msg"]


def test_no_password_in_any_child_argv(pg_server, project, tmp_path):
    pg_server.psql("INSERT INTO public.posts (author, body) SELECT author, repeat(md5(g::text), 40) "
                   "FROM public.posts, generate_series(1, 200) g", dbname=project)
    root = str(tmp_path / "store")
    proc = start_module("dump", dict(job="supa-argv", source=supabase_source(pg_server, project),
                                     storage=dict(path=root), compression_level=19, compression_threads=1),
                        tmp_path)
    seen = []
    for marker in (b"--format=custom", b"--schema-only"):
        pid = wait_for_child(proc.pid, "pg_dump", argv_contains=marker, timeout=120)
        try:
            argv = cmdline(pid)
            with open("/proc/%d/environ" % pid, "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue  # it ended meanwhile
        seen.append(marker)
        assert not any(pg_server.password.encode() in arg for arg in argv), argv
        assert ("PGPASSWORD=" + pg_server.password).encode() in environ
        assert b"PGSSLMODE=disable" in environ
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (out, err)
    result = json.loads(out)
    assert pg_server.password not in out.decode()
    assert seen
    assert pg_server.password not in " ".join(result["command"])


def test_roles_without_rights_are_a_warning_or_a_failure_when_required(pg_server, project, run_module, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("pg_dump", "psql", "pg_restore"):
        os.symlink(pg_server.tool(tool), str(bindir / tool))
    fake = bindir / "pg_dumpall"
    fake.write_text("#!/bin/sh\necho 'pg_dumpall: error: query failed: ERROR:  permission denied for table "
                    "pg_authid' >&2\nexit 1\n")
    fake.chmod(0o755)
    root = str(tmp_path / "store")
    source = supabase_source(pg_server, project)
    source["executable"] = str(bindir / "pg_dump")
    res = run_module("dump", dict(job="supa-pooler", source=source, storage=dict(path=root)))
    assert res.rc == 0, res.describe()
    assert sorted(by_role(res.result["manifest"])) == ["managed-data", "managed-schema"]
    assert "roles attachment was skipped" in json.dumps(res.result.get("warnings")), res.describe()
    assert "permission denied" in json.dumps(res.result.get("warnings"))
    assert not any(".roles." in name for name in stored_files(root))

    strict = dict(source, supabase=dict(require_attachments=True))
    failed = run_module("dump", dict(job="supa-strict", source=strict, storage=dict(path=root)))
    assert failed.rc == 1
    assert "permission denied" in failed.result["msg"] and "require_attachments" in failed.result["msg"]
    assert not any(name.startswith("supa-strict/") and "last-attempt" not in name for name in stored_files(root))


def test_ssl_mode_defaults_to_require(pg_server, project, run_module, tmp_path):
    source = supabase_source(pg_server, project)
    del source["ssl_mode"]
    res = run_module("dump", dict(job="supa-ssl", source=source, storage=dict(path=str(tmp_path / "store"))))
    assert res.rc == 1
    assert "SSL" in res.result["msg"] or "ssl" in res.result["msg"]
    assert not (tmp_path / "store").exists()


def test_connection_string_and_check_mode(pg_server, project, run_module, tmp_path):
    from urllib.parse import quote

    uri = "postgresql://%s:%s@%s:%d/%s?sslmode=disable" % (quote(pg_server.user), quote(pg_server.password, safe=""),
                                                            pg_server.host, pg_server.port, project)
    root = tmp_path / "store"
    args = dict(job="supa-uri", source=dict(engine="supabase", supabase=dict(connection_string=uri)),
                storage=dict(path=str(root)))
    check = run_module("dump", args, check_mode=True)
    assert check.rc == 0, check.describe()
    assert check.result["changed"] is True
    assert not root.exists()
    assert pg_server.password not in json.dumps(check.result)
    assert any(arg.startswith("--exclude-schema=auth") for arg in check.result["command"])
    done = run_module("dump", args)
    assert done.rc == 0, done.describe()
    assert pg_server.password not in done.stdout


@pytest.mark.parametrize("source_extra, message", [
    (dict(supabase=dict(connection_string="mysql://u:p@h/db"), host=None, port=None, user=None, password=None,
          database=None), "must start with postgresql://"),
    (dict(supabase=dict(connection_string="postgresql://u:p@h/db?options=-c"), host=None, port=None,
          user=None, password=None, database=None), "'options' is not supported"),
    (dict(supabase=dict(connection_string="postgresql://u:p@h/db")), "cannot be combined with source.host"),
    (dict(host="aws-0-eu-central-1.pooler.supabase.com", port=6543), "transaction pooler"),
    (dict(supabase=dict(storage_buckets=["avatars"])), "needs source.supabase.storage_endpoint"),
    (dict(supabase=dict(storage_buckets=["all", "x"], storage_endpoint="https://x.supabase.co/storage/v1/s3",
                        storage_region="eu", **KEYS)),
     "'all' cannot be combined"),
    (dict(supabase=dict(storage_buckets=["../up"], storage_endpoint="https://x/storage/v1/s3",
                        storage_region="eu", **KEYS)),
     "is not a bucket name"),
    (dict(supabase=dict(storage_region="eu")), "only used with source.supabase.storage_buckets"),
])
def test_bad_options_fail_before_anything_is_written(pg_server, project, run_module, tmp_path, source_extra, message):
    source = supabase_source(pg_server, project)
    source.update(source_extra)
    source = dict((k, v) for k, v in source.items() if v is not None)
    root = tmp_path / "store"
    res = run_module("dump", dict(job="supa-bad", source=source, storage=dict(path=str(root))))
    assert res.rc == 1, res.describe()
    assert message in res.result["msg"]
    assert not root.exists()
