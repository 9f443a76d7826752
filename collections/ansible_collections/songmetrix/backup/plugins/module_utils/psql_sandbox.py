"""psql in restricted mode for SQL read back from storage: no meta-command of a backup ever runs.

A plain-format dump is a psql script, and psql runs the backslash meta-commands in it: ``\\!`` runs
a shell command, ``\\o |cmd`` and ``\\copy ... program`` start programs, ``\\i`` and ``\\w`` read
and write files, all as the user running the restore. Whoever can write to the storage could
plant them. So every psql that loads SQL from a backup gets ``\\restrict <random key>`` as its
first input line (psql 13.22, 14.19, 15.14, 16.10, 17.6, 18 and later): from there psql refuses
every meta-command except ``\\unrestrict`` with that key, which the backup cannot know.

Why psql's own restricted mode rather than a filter that refuses backslashes outside COPY data:
psql's lexer decides what is a meta-command (quotes, E'' strings, dollar quotes, nested
comments, standard_conforming_strings, COPY FROM STDIN data), and a second parser that differs
from it in any corner is a bypass. Here psql itself refuses.

pg_dump of those same releases writes its own ``\\restrict KEY`` near the top of a plain dump
and ``\\unrestrict KEY`` at its end; a restricted psql refuses a second ``\\restrict``, so that
pair is dropped from the stream: the first ``\\restrict`` line of the header (only comment and
blank lines before it) and the lines that are exactly ``\\unrestrict`` with that key. Dropping
lines cannot lift our restriction; everything else reaches psql unchanged.
"""

import glob
import os
import re
import secrets

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.pg_client import CLIENT_DIR_PATTERNS
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import child_env, run_capture

# First minor release of each major that has \restrict (CVE-2025-8714); every 18 release has it.
RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}
NEEDED = "13.22, 14.19, 15.14, 16.10, 17.6 or 18 and later"
PSQL_VERSION_RE = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+)|([a-z]+\d*))?")
# What a restricted psql says when it refuses a meta-command, or an \unrestrict with another key.
REFUSED_MARKS = ("backslash commands are restricted", "\\unrestrict: wrong key")
HEADER_LIMIT = 64 * 1024  # pg_dump's header is a few hundred bytes
_OWN_RESTRICT_RE = re.compile(rb"^\\restrict ([A-Za-z0-9]+)[ \t\r]*$")
_TRAILING_SPACE = frozenset(b" \t\r")


def psql_version(path):
    """(major, minor, suffix, text) of what ``psql --version`` prints (minor None for a pre-release such as
    18beta1, whose suffix is beta1); None when it prints no version."""
    rc, out, _err = run_capture("psql", [path, "--version"], env=child_env())
    match = PSQL_VERSION_RE.search(out) if rc == 0 else None
    if not match:
        return None
    minor = int(match.group(2)) if match.group(2) is not None else None
    return int(match.group(1)), minor, match.group(3), match.group(0)[len("(PostgreSQL) "):]


def has_restrict(major, minor, suffix=None):
    """Whether psql ``major.minor`` (or a pre-release ``major<suffix>``) has \\restrict."""
    if major >= 19:
        return True
    if major == 18:
        return suffix not in ("beta1", "beta2", "devel")
    return minor is not None and major in RESTRICT_SINCE and minor >= RESTRICT_SINCE[major]


def _candidates(first):
    """``first``, then the psql of every client major installed in the usual places, newest first."""
    yield first
    found = []
    for pattern in CLIENT_DIR_PATTERNS:
        for directory in glob.glob(pattern):
            match = re.search(r"(\d+)$", os.path.dirname(directory))  # .../postgresql/16/bin, /usr/pgsql-16/bin
            path = os.path.join(directory, "psql")
            if match and os.access(path, os.X_OK) and path != first:
                found.append((int(match.group(1)), path))
    for _major, path in sorted(found, reverse=True):
        yield path


def sandboxed_psql(path, chosen_by=None):
    """The psql that loads SQL from a backup: ``path`` when it has \\restrict; otherwise, unless the user
    chose it (``chosen_by`` names the option), the newest installed client that has it; else a
    ValidationError naming the releases that have it, raised before anything is loaded."""
    seen = []
    for candidate in _candidates(path) if not chosen_by else [path]:
        version = psql_version(candidate)
        if version is None:
            seen.append("%s (no version)" % candidate)
            continue
        major, minor, suffix, text = version
        if has_restrict(major, minor, suffix):
            return candidate
        seen.append("%s is %s" % (candidate, text))
    fix = ("and set %s to the pg_restore beside it (psql is taken from its folder)" % chosen_by if chosen_by
           else "or set target.executable to the pg_restore beside such a psql")
    raise ValidationError(
        "refusing to load SQL from a backup with a psql that has no \\restrict (%s): without it the backup's "
        "psql meta-commands (\\! and others) would run on this host. Install psql %s (Debian/Ubuntu: the "
        "current postgresql-client-<major> point release; PGDG RPMs: postgresql<major>), %s"
        % ("; ".join(seen), NEEDED, fix))


class RestrictedScript(object):
    """A pipeline writer in front of a psql's stdin (a ChildWriter): ``\\restrict <random key>`` first, the
    dump's own \\restrict/\\unrestrict pair dropped, everything else passed unchanged.

    finish() turns psql's refusal of a meta-command into a clear error, also for a psql that runs
    without ON_ERROR_STOP (it goes on after the refusal and exits 0)."""

    def __init__(self, writer, key=None):
        self.writer = writer
        self.key = key or secrets.token_hex(32)  # hex: psql takes only letters and digits
        self._header = True
        self._head = b""
        self._needle = None  # b"\\unrestrict <dump's key>" once the header held its \restrict
        self._pending = b""  # held back: a possible \unrestrict line not complete yet
        self._at_line_start = True  # whether the byte before _pending was a newline
        writer.write(b"\\restrict " + self.key.encode("ascii") + b"\n")

    # -- the header: comment and blank lines, then maybe pg_dump's \restrict
    def write(self, data):
        if not self._header:
            self._body(data)
            return
        self._head += data
        while self._header:
            end = self._head.find(b"\n")
            if end < 0:
                if len(self._head) > HEADER_LIMIT:
                    self._end_header(b"")
                return
            line, self._head = self._head[:end], self._head[end + 1:]
            if not line.strip() or line.startswith(b"--"):
                self.writer.write(line + b"\n")
                continue
            match = _OWN_RESTRICT_RE.match(line)
            if match:
                self._needle = b"\\unrestrict " + match.group(1)
                self._end_header(b"")
            else:
                self._end_header(line + b"\n")

    def _end_header(self, first):
        self._header = False
        rest, self._head = first + self._head, b""
        if rest:
            self._body(rest)

    # -- the body: everything passes but the lines that are exactly the dump's \unrestrict
    def _body(self, data, final=False):
        if self._needle is None:
            self._emit(data)
            return
        buf = self._pending + data
        self._pending = b""
        start = 0
        search = 0
        while True:
            i = buf.find(self._needle, search)
            if i < 0:
                break
            line_start = (i == 0 and self._at_line_start) or (i > 0 and buf[i - 1:i] == b"\n")
            end = i + len(self._needle)
            while end < len(buf) and buf[end] in _TRAILING_SPACE and end - i < 4096:
                end += 1
            if line_start and end == len(buf) and not final and end - i < 4096:
                self._emit(buf[start:i])
                self._pending = buf[i:]
                return
            if line_start and (end == len(buf) or buf[end:end + 1] == b"\n"):
                self._emit(buf[start:i])
                start = search = end + 1
                self._at_line_start = True
                continue
            search = i + 1
        # Hold back a tail that may be the start of the needle, to be matched with the next write.
        keep = 0 if final else min(len(self._needle) - 1, len(buf) - start)
        while keep and not self._needle.startswith(buf[len(buf) - keep:]):
            keep -= 1
        self._emit(buf[start:len(buf) - keep])
        self._pending = buf[len(buf) - keep:]

    def _emit(self, data):
        if data:
            self.writer.write(data)
            self._at_line_start = data.endswith(b"\n")

    def _refusal(self):
        err = self.writer.child.stderr_text()
        line = next((item for item in err.splitlines() if any(mark in item for mark in REFUSED_MARKS)), None)
        if line is None:
            return None
        return ("the backup holds a psql meta-command (a backslash command such as \\! or \\copy), which this "
                "restore refuses to run; it was not written by pg_dump, the backup may have been tampered with "
                "(psql: %s)" % line.strip())

    def finish(self):
        if self._header:
            self._end_header(b"")
        self._body(b"", final=True)
        try:
            self.writer.finish()
        except BackupError as exc:
            raise BackupError(self._refusal() or str(exc))
        refusal = self._refusal()
        if refusal:
            raise BackupError(refusal)

    def abort(self):
        self.writer.abort()
