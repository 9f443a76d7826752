"""MongoDB connections for the database tools: the connection URI and the 0600 ``--config`` file holding it.

The URI may carry the password, so it never goes on a command line: mongodump and mongorestore
(MongoDB Database Tools 100.3.0 and later) read it from a YAML file given with ``--config``,
written here with mode 0600 and removed after the run.
"""

import json
import re
import tempfile
from urllib.parse import quote, urlencode

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import last_lines, run_capture
from ansible_collections.songmetrix.backup.plugins.module_utils.private_files import (
    remove_private_file, write_private_file)
from ansible_collections.songmetrix.backup.plugins.module_utils.validation import no_control_chars

CONFIG_PLACEHOLDER = "<0600 config file>"
MIN_TOOLS_VERSION = (100, 3, 0)  # the first Database Tools release with --config
TOOLS_VERSION_RE = re.compile(r"version:?\s*r?(\d+)\.(\d+)\.(\d+)")
# ssl_mode (PostgreSQL's vocabulary, shared by every engine) -> MongoDB URI options.
TLS_OPTIONS = {
    "disable": [("tls", "false")],
    "require": [("tls", "true"), ("tlsInsecure", "true")],
    "verify-ca": [("tls", "true"), ("tlsAllowInvalidHostnames", "true")],
    "verify-full": [("tls", "true")],
}
URI_EXCLUSIVE = ("host", "port", "user", "password", "ssl_mode", "connect_timeout")
# What MongoDB refuses in a database name (on Linux; mongo-tools common/util/mongo.go), and its length
# limit. Names are also patterns for mongorestore (--nsInclude=<db>.*): a '.' would move the restore
# into another database (target admin.system: collection users restored as admin.system.users), a '$'
# turns --nsFrom/--nsTo into $variable$ syntax.
FORBIDDEN_IN_DATABASE = '/\\. "$\x00'
MAX_DATABASE_BYTES = 63


def connection_uri(params, label):
    """The connection string of ``params`` (a source or target dict): ``mongodb.uri``, or one built
    from host, port, user, password, ssl_mode and connect_timeout. Secret: never log it."""
    options = params.get("mongodb") or {}
    uri = options.get("uri")
    if uri:
        no_control_chars("%s.mongodb.uri" % label, uri)
        if not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise ValidationError("%s.mongodb.uri must start with mongodb:// or mongodb+srv://" % label)
        given = [key for key in URI_EXCLUSIVE if params.get(key) not in (None, "")]
        if given:
            raise ValidationError("%s cannot be combined with %s.mongodb.uri: put them in the URI"
                                  % (", ".join("%s.%s" % (label, key) for key in given), label))
        return uri
    host = no_control_chars("%s.host" % label, params.get("host")) or "localhost"
    if "/" in host or "@" in host or "?" in host:
        raise ValidationError("%s.host %r is not a host name or address (use %s.mongodb.uri for a connection "
                              "string)" % (label, host, label))
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host  # an IPv6 address
    user, password = params.get("user"), params.get("password")
    no_control_chars("%s.user" % label, user)
    no_control_chars("%s.password" % label, password)
    if password and not user:
        raise ValidationError("%s.password needs %s.user" % (label, label))
    userinfo = ""
    if user:
        userinfo = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    query = []
    ssl_mode = params.get("ssl_mode")
    if ssl_mode:
        if ssl_mode not in TLS_OPTIONS:
            raise ValidationError("%s.ssl_mode %s is not available for MongoDB (no opportunistic TLS): use disable, "
                                  "require, verify-ca or verify-full" % (label, ssl_mode))
        query.extend(TLS_OPTIONS[ssl_mode])
    if params.get("connect_timeout"):
        millis = str(int(params["connect_timeout"]) * 1000)
        query.extend([("connectTimeoutMS", millis), ("serverSelectionTimeoutMS", millis)])
    port = ":%d" % int(params["port"]) if params.get("port") else ""
    return "mongodb://%s%s%s/%s" % (userinfo, host, port, "?" + urlencode(query) if query else "")


def check_database_name(label, name):
    """``name`` when MongoDB takes it as a database name (None stays None); else ValidationError."""
    if name is None:
        return None
    no_control_chars(label, name)
    if name.startswith("-"):
        raise ValidationError("%s %r must not start with '-' (the tools would read it as an option)" % (label, name))
    if not name or any(ch in FORBIDDEN_IN_DATABASE for ch in name):
        raise ValidationError("%s %r is not a MongoDB database name: it must not be empty or contain any of "
                              "/ \\ . \" $, a space or NUL" % (label, name))
    size = len(name.encode("utf-8"))
    if size > MAX_DATABASE_BYTES:
        raise ValidationError("%s %r is not a MongoDB database name: it is %d bytes long, MongoDB takes at most %d"
                              % (label, name, size, MAX_DATABASE_BYTES))
    return name


def where(params):
    """Host and port for messages, without credentials."""
    if (params.get("mongodb") or {}).get("uri"):
        uri = params["mongodb"]["uri"]
        rest = uri.split("://", 1)[1]
        # Nothing before the last '@': a password with an unencoded '/', '?' or '@' must not show.
        rest = rest.rsplit("@", 1)[-1]
        return rest.split("/", 1)[0].split("?", 1)[0]
    return "%s:%s" % (params.get("host") or "localhost", params.get("port") or 27017)


def tools_version(tool, name):
    """(the version text, e.g. 'mongodump version: 100.10.0'); refuses tools without --config."""
    rc, out, err = run_capture(name, [tool, "--version"])
    if rc != 0:
        raise BackupError("%s --version failed: %s" % (tool, last_lines(err or out)))
    first = (out.strip().splitlines() or [""])[0].strip()
    match = TOOLS_VERSION_RE.search(first)
    if not match or tuple(int(part) for part in match.groups()) < MIN_TOOLS_VERSION:
        raise BackupError("%s is %r: MongoDB Database Tools 100.3.0 or later are needed (the connection string "
                          "is passed in a --config file, never on the command line)" % (tool, first or out.strip()))
    return first


class ConfigFile(object):
    """A mode-0600 YAML file with ``uri:``, for ``--config``; remove() deletes it (idempotent)."""

    def __init__(self, uri, directory=None):
        # A JSON string is a valid YAML double-quoted scalar: quotes, backslashes and non-ASCII
        # characters survive as they are.
        text = "uri: %s\n" % json.dumps(uri)
        try:
            self.path = write_private_file(directory, "mongodb-config", text.encode("utf-8"), ".yaml")
        except OSError as exc:
            raise BackupError("cannot write the mongodb config file in %s: %s"
                              % (directory or tempfile.gettempdir(), exc.strerror or exc))

    def option(self):
        return "--config=%s" % self.path

    def remove(self):
        if self.path is not None:
            remove_private_file(self.path)
        self.path = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()
