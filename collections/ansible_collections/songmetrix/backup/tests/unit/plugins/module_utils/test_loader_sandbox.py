"""The sandboxed loaders' pure parts: which psql has \\restrict, what the stream in front of psql drops (and only
that, however the bytes are split), the mysql client options read from --help, and max_restore_size's sizes."""

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import mysql_sandbox, psql_sandbox
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.psql_sandbox import RestrictedScript, has_restrict
from ansible_collections.songmetrix.backup.plugins.module_utils.validation import byte_size


@pytest.mark.parametrize("version,expected", [
    ((12, 22, None), False), ((13, 21, None), False), ((13, 22, None), True), ((14, 18, None), False),
    ((14, 19, None), True), ((15, 13, None), False), ((15, 14, None), True), ((15, 18, None), True),
    ((16, 2, None), False), ((16, 9, None), False), ((16, 10, None), True), ((17, 5, None), False),
    ((17, 6, None), True), ((18, 0, None), True), ((18, None, "beta1"), False), ((18, None, "rc1"), True),
    ((19, None, "devel"), True),
])
def test_which_psql_has_restrict(version, expected):
    assert has_restrict(*version) is expected


class FakeChild(object):
    def __init__(self, stderr=""):
        self.stderr = stderr

    def stderr_text(self):
        return self.stderr


class FakeWriter(object):
    def __init__(self, stderr="", fail=False):
        self.child = FakeChild(stderr)
        self.data = b""
        self.fail = fail

    def write(self, data):
        self.data += data

    def finish(self):
        if self.fail:
            raise BackupError("psql exited with status 3: %s" % self.child.stderr)

    def abort(self):
        pass


def through(payload, step, **writer):
    out = FakeWriter(**writer)
    script = RestrictedScript(out, key="ours")
    for start in range(0, len(payload), step):
        script.write(payload[start:start + step])
    script.finish()
    return out.data


PG_DUMP = (b"--\n-- PostgreSQL database dump\n--\n\n\\restrict K1\n\n-- Dumped by pg_dump\n\nSET x = 1;\n"
           b"COPY t (a) FROM stdin;\n\\restrict K1\n\\\\unrestrict K1\n\\unrestrict K1x\n\\.\n\n"
           b"--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict K1\n\n")
EXPECTED = (b"\\restrict ours\n--\n-- PostgreSQL database dump\n--\n\n\n-- Dumped by pg_dump\n\nSET x = 1;\n"
            b"COPY t (a) FROM stdin;\n\\restrict K1\n\\\\unrestrict K1\n\\unrestrict K1x\n\\.\n\n"
            b"--\n-- PostgreSQL database dump complete\n--\n\n\n")


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 13, 64, 100000])
def test_the_dumps_own_pair_is_dropped_and_nothing_else(step):
    """The header's \\restrict K1 and the exact line \\unrestrict K1 go; a COPY line that reads '\\restrict K1'
    (data: CR + 'estrict K1'), '\\\\unrestrict K1' and '\\unrestrict K1x' stay."""
    assert through(PG_DUMP, step) == EXPECTED


@pytest.mark.parametrize("step", [1, 4, 100000])
def test_without_a_header_restrict_everything_passes(step):
    dump = b"-- x\nSET a = 1;\n\\restrict K1\n\\unrestrict K1\n"
    assert through(dump, step) == b"\\restrict ours\n" + dump


def test_an_unrestrict_line_without_newline_at_the_end_is_dropped():
    assert through(b"\\restrict K1\nSELECT 1;\n\\unrestrict K1  ", 3) == b"\\restrict ours\nSELECT 1;\n"


def test_a_header_restrict_after_sql_is_not_the_dumps_own():
    dump = b"SELECT 1;\n\\restrict K1\n\\unrestrict K1\n"
    assert through(dump, 5) == b"\\restrict ours\n" + dump


def test_a_refused_meta_command_is_named():
    with pytest.raises(BackupError, match="holds a psql meta-command .* refuses to run"):
        through(b"\\! id\n", 100, stderr="psql:<stdin>:2: error: backslash commands are restricted; only "
                                         "\\unrestrict is allowed", fail=True)
    with pytest.raises(BackupError, match="holds a psql meta-command"):  # no ON_ERROR_STOP: exit 0, still refused
        through(b"\\! id\n", 100, stderr="backslash commands are restricted; only \\unrestrict is allowed")
    with pytest.raises(BackupError, match="holds a psql meta-command"):
        through(b"\\unrestrict guess\n", 100, stderr="\\unrestrict: wrong key", fail=True)
    with pytest.raises(BackupError, match="^psql exited with status 3: ERROR: boom$"):
        through(b"SELECT;\n", 100, stderr="ERROR: boom", fail=True)


def test_the_key_is_random_hex():
    first, second = RestrictedScript(FakeWriter()), RestrictedScript(FakeWriter())
    assert first.key != second.key and len(first.key) == 64 and first.key.isalnum()


def test_an_old_psql_is_refused_naming_what_to_install(monkeypatch):
    versions = {"/old/psql": (16, 2, None, "16.2"), "/usr/lib/postgresql/15/bin/psql": (15, 13, None, "15.13")}
    monkeypatch.setattr(psql_sandbox, "psql_version", versions.get)
    monkeypatch.setattr(psql_sandbox, "_candidates", lambda first: iter([first, "/usr/lib/postgresql/15/bin/psql"]))
    with pytest.raises(ValidationError) as info:
        psql_sandbox.sandboxed_psql("/old/psql")
    message = str(info.value)
    assert "/old/psql is 16.2" in message and "15/bin/psql is 15.13" in message
    assert "13.22, 14.19, 15.14, 16.10, 17.6 or 18 and later" in message and "postgresql-client" in message
    with pytest.raises(ValidationError, match="and set target.executable to the pg_restore beside it"):
        psql_sandbox.sandboxed_psql("/old/psql", "target.executable")
    versions["/usr/lib/postgresql/15/bin/psql"] = (15, 14, None, "15.14")
    assert psql_sandbox.sandboxed_psql("/old/psql") == "/usr/lib/postgresql/15/bin/psql"


HELP = """mariadb  Ver 15.1 Distrib 10.11.19-MariaDB
  -?, --help          Display this help and exit.
  --binary-mode       Binary mode allows certain character sequences to be
  -G, --named-commands
  --local-infile      Enable LOAD DATA LOCAL INFILE.
  --sandbox           Disallow commands that access the file system
"""


def test_mysql_options_from_help(monkeypatch):
    monkeypatch.setattr(mysql_sandbox, "run_capture", lambda *args, **kwargs: (0, HELP, ""))
    options = mysql_sandbox.client_options("/usr/bin/mariadb")
    assert {"binary-mode", "named-commands", "local-infile", "sandbox", "help"} <= options
    assert "commands" not in options
    assert mysql_sandbox.sandbox_args("c", "mariadb", options) == ["--binary-mode", "--sandbox", "--local-infile=0"]
    assert mysql_sandbox.sandbox_args("c", "mysql", {"binary-mode", "commands"}) == [
        "--binary-mode", "--commands=OFF", "--local-infile=0"]
    with pytest.raises(ValidationError, match="has no --binary-mode"):
        mysql_sandbox.sandbox_args("c", "mysql", {"sandbox"})


@pytest.mark.parametrize("value,expected", [(None, None), ("", None), (1048576, 1048576), ("10G", 10 * 1024 ** 3),
                                            ("512MiB", 512 * 1024 ** 2), (" 3 k ", 3072), ("2TB", 2 * 1024 ** 4)])
def test_byte_size(value, expected):
    assert byte_size("max_restore_size", value) == expected


@pytest.mark.parametrize("value", ["10X", "-1", "1.5G", "G", True])
def test_byte_size_refuses(value):
    with pytest.raises(ValidationError, match="max_restore_size must be a number of bytes"):
        byte_size("max_restore_size", value)
