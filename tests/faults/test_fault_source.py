"""Source faults: the database server stops mid-dump, the dump tool is killed, pg_hba rejects the
login (really, and with a tool that exits 0 after printing the error), the connection is refused.

Each on a job that already has backups: the task fails naming the cause, no manifest and no
partial object appear (backup_info sees the same backups, nothing incomplete), the job's
last-attempt record says failed, and prune deletes nothing until a backup succeeds again.

The servers here are this module's own (tests/servers.py), not the session's: stopping them
disturbs no other test.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from fault_helpers import assert_failed_run_left_no_backup, seed_history
from tests.integration.engine_helpers import start_module, wait_for_child
from tests.servers import MariaDBServer, PostgresServer, free_port, started_server

ROWS = 300_000  # ~75 MB of dump, minutes at zstd -19 on one thread: time enough to break it midway


@pytest.fixture(scope="module")
def own_pg():
    server = started_server(PostgresServer)
    name = "faults_" + uuid.uuid4().hex[:6]
    server.create_database(name)
    server.psql("CREATE TABLE big AS SELECT g, md5(g::text) || repeat('y', 200) AS t "
                "FROM generate_series(1, %d) g" % ROWS, dbname=name)
    server.database = name
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def own_mariadb():
    server = started_server(MariaDBServer)
    name = "faults_" + uuid.uuid4().hex[:6]
    server.create_database(name)
    server.sql("CREATE TABLE big (id INT PRIMARY KEY, t TEXT); "
               "INSERT INTO big SELECT seq, REPEAT(MD5(seq), 8) FROM seq_1_to_%d" % ROWS, database=name)
    server.database = name
    yield server
    server.cleanup()


def source_of(engine, server, **override):
    source = dict(engine=engine, host=server.host, port=server.port, user=server.user, password=server.password,
                  database=server.database, connect_timeout=5)
    source.update(override)
    return source


SERVERS = {"postgresql": "own_pg", "mariadb": "own_mariadb"}
TOOLS = {"postgresql": ("pg_dump", b"--format=custom"), "mariadb": ("mariadb-dump", b"--single-transaction")}
# What the task's message says when the server goes away under the dump tool.
SERVER_GONE = {
    "postgresql": ("terminating connection due to administrator command", "server closed the connection"),
    "mariadb": ("Lost connection", "server has gone away", "Error 2013", "Error 2006"),
}


def wait_for_tool(proc, tool, marker):
    """The dump tool's pid, or the module's own output when it ended before starting one."""
    try:
        return wait_for_child(proc.pid, tool, argv_contains=marker, timeout=30)
    except AssertionError:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError("the module ended before %s ran: %r %r" % (tool, out[-3000:], err[-2000:]))
        raise


def wait_for_output(pid, least=2 * 1024 * 1024, timeout=60):
    """Until the dump tool has written ``least`` bytes: it is streaming. (Not until bytes reach the
    storage: zstd -19 buffers a 32 MiB job first, and would then compress all of it after the fault.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/io" % pid) as handle:
                written = int(dict(line.split(": ") for line in handle.read().splitlines())["wchar"])
        except (OSError, KeyError, ValueError):
            written = 0
        if written >= least:
            return written
        time.sleep(0.01)
    raise AssertionError("the dump tool wrote less than %d bytes" % least)


@pytest.mark.parametrize("fault", ["server_stopped", "tool_killed"])
@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_dump_broken_mid_stream(request, run_module, tmp_path, engine, fault):
    server = request.getfixturevalue(SERVERS[engine])
    job = "mid-%s-%s" % (engine, fault.replace("_", "-"))
    storage = dict(type="local", path=str(tmp_path / "store"))
    history = seed_history(storage, job)
    tool, marker = TOOLS[engine]
    proc = start_module("dump", dict(job=job, source=source_of(engine, server), storage=storage,
                                     compression_level=19, compression_threads=1, _ansible_verbosity=3), tmp_path)
    try:
        pid = wait_for_tool(proc, tool, marker)
        wait_for_output(pid)
        if fault == "tool_killed":
            os.kill(pid, signal.SIGKILL)
        else:
            server.stop()
        out, _err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.start()
    out = out.decode("utf-8", "replace")
    assert proc.returncode == 1, out
    if fault == "tool_killed":
        causes = ("%s was killed by signal 9" % tool,)
    else:
        causes = SERVER_GONE[engine]
    assert any(cause in out for cause in causes), out
    assert server.password not in out
    assert_failed_run_left_no_backup(run_module, storage, job, history)


def test_pg_hba_rejection_fails_at_preflight_naming_it(run_module, tmp_path, own_pg):
    job = "pg-hba"
    storage = dict(type="local", path=str(tmp_path / "store"))
    history = seed_history(storage, job)
    hba = own_pg.data_dir / "pg_hba.conf"
    original = hba.read_text()
    try:
        hba.write_text("local all postgres trust\nhost all backup_admin 127.0.0.1/32 reject\n")
        own_pg._admin_sql("SELECT pg_reload_conf()")
        time.sleep(0.5)
        res = run_module("dump", dict(job=job, source=source_of("postgresql", own_pg), storage=storage))
    finally:
        hba.write_text(original)
        own_pg._admin_sql("SELECT pg_reload_conf()")
    assert res.rc == 1, res.describe()
    assert "pg_hba.conf rejects connection" in res.msg, res.msg
    assert_failed_run_left_no_backup(run_module, storage, job, history, ["pg_hba.conf rejects connection"])


def test_pg_dump_exiting_0_after_an_error_on_stderr_fails(run_module, tmp_path, own_pg):
    """A pg_dump that writes a whole dump, prints a FATAL on stderr and exits 0 (as some failures do)."""
    fake = tmp_path / "bin" / "pg_dump"
    fake.parent.mkdir()
    real = own_pg.tool("pg_dump")
    fake.write_text(
        "#!/bin/sh\n"
        "case \" $* \" in *' --version '*|*' --schema-only '*) exec %s \"$@\";; esac\n"
        "%s \"$@\"\n"
        "echo 'pg_dump: error: connection to server at \"127.0.0.1\" failed: FATAL:  "
        "pg_hba.conf rejects connection for host \"127.0.0.1\"' >&2\n"
        "exit 0\n" % (real, real))
    fake.chmod(0o755)
    job = "pg-exit0"
    storage = dict(type="local", path=str(tmp_path / "store"))
    history = seed_history(storage, job)
    res = run_module("dump", dict(job=job, storage=storage, compression="none", row_counts=False,
                                  source=source_of("postgresql", own_pg, executable=str(fake))))
    assert res.rc == 1, res.describe()
    assert "pg_dump reported an error" in res.msg and "pg_hba.conf rejects connection" in res.msg, res.msg
    assert_failed_run_left_no_backup(run_module, storage, job, history, ["pg_hba.conf rejects connection"])


@pytest.mark.parametrize("engine,expected", [
    ("postgresql", "cannot connect to PostgreSQL at"),
    ("mariadb", "Can't connect to server"),
])
def test_connection_refused(request, run_module, tmp_path, engine, expected):
    server = request.getfixturevalue(SERVERS[engine])
    job = "refused-" + engine
    storage = dict(type="local", path=str(tmp_path / "store"))
    history = seed_history(storage, job)
    res = run_module("dump", dict(job=job, storage=storage, source=source_of(engine, server, port=free_port())))
    assert res.rc == 1, res.describe()
    assert expected in res.msg, res.msg
    assert server.password not in res.stdout
    assert_failed_run_left_no_backup(run_module, storage, job, history, [expected])
