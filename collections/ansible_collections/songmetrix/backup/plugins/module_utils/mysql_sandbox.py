"""The mysql/mariadb client options that keep a backup's SQL from running anything on this host.

The mysql and mariadb clients run client commands found in their input: ``\\!`` and ``system``
start a shell command, ``\\.``/``source`` read a file, ``\\T``/``tee`` write one; and a
``LOAD DATA LOCAL INFILE`` statement makes the client read any local file it can (as root:
any) and send it to the server. A dump read back from storage may hold any of them, so the
loading client gets:

- ``--binary-mode``: with input that is not a terminal, the client parses no client command but
  ``\\C`` (character set) and ``DELIMITER``; everything else goes to the server as SQL, where
  ``\\! id`` is a syntax error. Both families have it (MySQL since 5.6.3); a client without it is
  refused.
- ``--sandbox`` (MariaDB clients of 10.5.25, 10.6.18, 10.11.8, 11.0.6, 11.1.5, 11.2.4, 11.4.2 and
  later): commands that reach files or the shell are errors, should binary mode let one through.
  mariadb-dump of those releases writes the line that enables it at the top of its dumps itself.
- ``--commands=OFF`` (Oracle MySQL clients that list it in ``--help``; a recent addition to 8.0, 8.4 and 9.x):
  client commands off entirely.
- ``--local-infile=0``: the client refuses LOAD DATA LOCAL INFILE. Its compiled-in default is not
  to be trusted: the MariaDB 10.11 client sends the file without it.

Which options a client has is read from its ``--help --verbose`` listing, not guessed from its
version.
"""

import re

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import child_env, last_lines, run_capture

OPTION_RE = re.compile(r"^\s+(?:-\S, )?--([a-z][a-z0-9-]*)", re.MULTILINE)


def client_options(client):
    """The long options ``client --help --verbose`` lists."""
    rc, out, err = run_capture("mysql client", [client, "--no-defaults", "--help", "--verbose"], env=child_env())
    if rc != 0:
        raise BackupError("%s --help failed: %s" % (client, last_lines(err or out)))
    return set(OPTION_RE.findall(out))


def sandbox_args(client, family, options=None):
    """The options that load untrusted SQL with ``client`` (of ``family`` mysql or mariadb), in argv order."""
    options = client_options(client) if options is None else options
    if "binary-mode" not in options:
        raise ValidationError(
            "refusing to load SQL from a backup with %s: it has no --binary-mode, so the backup's client commands "
            "(\\! and system, which run shell commands) would run on this host; install a current %s client"
            % (client, "MariaDB" if family == "mariadb" else "MySQL"))
    args = ["--binary-mode"]
    if family == "mariadb" and "sandbox" in options:
        args.append("--sandbox")
    if family == "mysql" and "commands" in options:
        args.append("--commands=OFF")
    args.append("--local-infile=0")
    return args
