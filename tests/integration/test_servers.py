"""The real-server fixtures themselves: they must give servers that behave like production ones."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.servers import MARIADB_PASSWORD_SPECIALS, PG_PASSWORD_SPECIALS


def _mariadb_login(server, user, password, *, protocol_tcp=True):
    """Log in with the stock client the way a careful tool would (defaults file, not argv)."""
    # Option-file value: double-quoted, with backslash and double quote escaped.
    value = password.replace("\\", "\\\\").replace('"', '\\"')
    r, w = os.pipe()
    os.write(w, f'[client]\nuser="{user}"\npassword="{value}"\n'.encode())
    os.close(w)
    try:
        argv = [server.client, f"--defaults-extra-file=/dev/fd/{r}"]
        if protocol_tcp:
            argv += ["--protocol=TCP", "-h", server.host, "-P", str(server.port)]
        else:
            argv += ["-S", server.socket]
        argv += ["-N", "-B", "-e", "SELECT CURRENT_USER()"]
        return subprocess.run(argv, capture_output=True, text=True, pass_fds=(r,), timeout=60, check=False)
    finally:
        os.close(r)


class TestPostgres:
    def test_listens_on_loopback_only_with_version(self, pg_server):
        assert pg_server.host == "127.0.0.1"
        with socket.create_connection((pg_server.host, pg_server.port), timeout=5):
            pass
        assert pg_server.version and pg_server.version[0].isdigit()
        assert pg_server.psql("SHOW server_version").startswith(pg_server.version)
        assert pg_server.psql("SHOW listen_addresses") == "127.0.0.1"
        assert (pg_server.bin_dir / "pg_dump").exists()

    def test_password_has_characters_that_need_escaping(self, pg_server):
        assert pg_server.password.count(PG_PASSWORD_SPECIALS) == 1

    def test_right_password_over_tcp(self, pg_server):
        assert pg_server.psql("SELECT current_user") == "backup_admin"
        assert pg_server.psql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == "t"
        ssl_or_not = pg_server.psql("SELECT inet_server_addr()")
        assert ssl_or_not == "127.0.0.1"

    def test_wrong_password_rejected(self, pg_server):
        with pytest.raises(Exception, match="password authentication failed"):
            pg_server.psql("SELECT 1", password=pg_server.password + "x")

    def test_no_password_rejected(self, pg_server):
        env = pg_server.client_env()
        env.pop("PGPASSWORD")
        proc = subprocess.run(
            [pg_server.tool("psql"), "-X", "-w", "-h", pg_server.host, "-p", str(pg_server.port),
             "-U", pg_server.user, "-d", "postgres", "-c", "SELECT 1"],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )
        assert proc.returncode != 0
        assert "password" in proc.stderr

    def test_create_and_drop_database(self, pg_server):
        name = pg_server.create_database("fixture_selftest")
        try:
            pg_server.psql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
                           dbname=name)
            assert pg_server.psql("SELECT count(*) FROM t", dbname=name) == "2"
            assert pg_server.psql("SELECT id, v FROM t ORDER BY id", dbname=name) == "1|a\n2|b"
        finally:
            pg_server.drop_database(name)
        assert pg_server.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == "0"

    def test_psql_raises_on_sql_error(self, pg_server):
        with pytest.raises(Exception, match="does_not_exist"):
            pg_server.psql("SELECT * FROM does_not_exist")

    def test_pg_dump_of_same_version_works(self, pg_server, pg_database):
        pg_server.psql("CREATE TABLE x (a int); INSERT INTO x VALUES (42);", dbname=pg_database)
        proc = subprocess.run(
            [pg_server.tool("pg_dump"), "-h", pg_server.host, "-p", str(pg_server.port), "-U", pg_server.user,
             "-d", pg_database, "--format=plain"],
            capture_output=True, text=True, env=pg_server.client_env(), timeout=120, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "COPY public.x (a) FROM stdin;\n42\n" in proc.stdout

    def test_stop_and_start_keep_port_and_data(self, pg_server, pg_database):
        pg_server.psql("CREATE TABLE keep (a int); INSERT INTO keep VALUES (7);", dbname=pg_database)
        port = pg_server.port
        pg_server.stop()
        try:
            assert not pg_server.running
            with pytest.raises(OSError), socket.create_connection((pg_server.host, port), timeout=2):
                pass
        finally:
            pg_server.start()
        assert pg_server.port == port
        assert pg_server.psql("SELECT a FROM keep", dbname=pg_database) == "7"


class TestMariaDB:
    def test_listens_on_loopback_with_version(self, mariadb_server):
        assert mariadb_server.host == "127.0.0.1"
        with socket.create_connection((mariadb_server.host, mariadb_server.port), timeout=5):
            pass
        assert "MariaDB" in mariadb_server.version
        assert os.path.exists(mariadb_server.socket)
        assert mariadb_server.sql("SELECT @@bind_address") == "127.0.0.1"
        assert mariadb_server.sql("SELECT @@port") == str(mariadb_server.port)

    def test_password_has_quote_and_hash(self, mariadb_server):
        assert "'" in mariadb_server.password and "#" in mariadb_server.password
        assert mariadb_server.password.count(MARIADB_PASSWORD_SPECIALS) == 1

    def test_right_password_over_tcp_and_socket(self, mariadb_server):
        proc = _mariadb_login(mariadb_server, mariadb_server.user, mariadb_server.password)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "backup_admin@127.0.0.1"
        proc = _mariadb_login(mariadb_server, mariadb_server.user, mariadb_server.password, protocol_tcp=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "backup_admin@localhost"

    def test_wrong_password_rejected(self, mariadb_server):
        proc = _mariadb_login(mariadb_server, mariadb_server.user, mariadb_server.password[:-1])
        assert proc.returncode != 0
        assert "Access denied" in proc.stderr

    def test_admin_has_all_privileges_with_grant_option(self, mariadb_server):
        grants = mariadb_server.sql("SHOW GRANTS FOR 'backup_admin'@'127.0.0.1'")
        assert "GRANT ALL PRIVILEGES ON *.* TO `backup_admin`@`127.0.0.1`" in grants
        assert "WITH GRANT OPTION" in grants

    def test_create_and_drop_database(self, mariadb_server):
        name = mariadb_server.create_database("fixture_selftest")
        try:
            mariadb_server.sql("CREATE TABLE t (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB;"
                               "INSERT INTO t VALUES (1, 'a'), (2, 'b');", database=name)
            assert mariadb_server.sql("SELECT id, v FROM t ORDER BY id", database=name) == "1\ta\n2\tb"
        finally:
            mariadb_server.drop_database(name)
        assert name not in mariadb_server.sql("SHOW DATABASES").split()

    def test_sql_raises_on_error(self, mariadb_server):
        with pytest.raises(Exception, match="doesn't exist"):
            mariadb_server.sql("SELECT * FROM mysql.does_not_exist")

    def test_stop_and_start_keep_port_and_data(self, mariadb_server, mariadb_database):
        mariadb_server.sql("CREATE TABLE keep (a INT) ENGINE=InnoDB; INSERT INTO keep VALUES (7);",
                           database=mariadb_database)
        port = mariadb_server.port
        mariadb_server.stop()
        try:
            assert not mariadb_server.running
            with pytest.raises(OSError), socket.create_connection((mariadb_server.host, port), timeout=2):
                pass
        finally:
            mariadb_server.start()
        assert mariadb_server.port == port
        assert mariadb_server.sql("SELECT a FROM keep", database=mariadb_database) == "7"


def test_run_module_reports_unknown_module(run_module):
    res = run_module("no_such_module_xyz", {})
    assert res.rc != 0
    assert res.result is None
    assert "No module named" in res.stderr


def test_storage_dir_is_fresh(storage_dir, spool_dir):
    assert storage_dir.is_dir() and not any(storage_dir.iterdir())
    assert spool_dir.is_dir() and storage_dir != spool_dir
