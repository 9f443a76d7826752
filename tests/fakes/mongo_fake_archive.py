"""Shared by the fake mongodump and mongorestore: a small BSON encoder and the archive format.

The archive layout follows the mongodump archive specification (mongo-tools common/archive/spec.md):
magic 0x8199e26d (little-endian), header document, collection metadata documents, terminator
0xFFFFFFFF, then namespace segments (header, documents, terminator) and end-of-namespace headers.
"""

import datetime
import json
import os
import struct
import sys

MAGIC = struct.pack("<I", 0x8199E26D)
TERMINATOR = b"\xff\xff\xff\xff"
TOOLS_VERSION = os.environ.get("FAKE_MONGO_TOOLS_VERSION", "100.10.0")


class Int64(int):
    pass


def bson(doc):
    body = b""
    for key, value in doc.items():
        name = key.encode() + b"\x00"
        if isinstance(value, bool):
            body += b"\x08" + name + (b"\x01" if value else b"\x00")
        elif isinstance(value, Int64):
            body += b"\x12" + name + struct.pack("<q", value)
        elif isinstance(value, int):
            body += b"\x10" + name + struct.pack("<i", value)
        elif isinstance(value, str):
            data = value.encode() + b"\x00"
            body += b"\x02" + name + struct.pack("<i", len(data)) + data
        elif isinstance(value, dict):
            body += b"\x03" + name + bson(value)
        else:
            raise TypeError(type(value))
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def log(message):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    sys.stderr.write("%s\t%s\n" % (stamp, message))
    sys.stderr.flush()


def parse_args(argv):
    """{"--name": value or True}, in order; positional arguments under ""."""
    opts = {}
    for arg in argv:
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name in opts and name in ("--excludeCollection", "--nsInclude", "--nsExclude"):
                opts[name] = opts[name] + [value]
            elif name in ("--excludeCollection", "--nsInclude", "--nsExclude"):
                opts[name] = [value]
            else:
                opts[name] = value if eq else True
        else:
            opts.setdefault("", []).append(arg)
    return opts


def read_config(path):
    """(text, uri) of a --config file: `uri: "<JSON string>"` lines."""
    with open(path) as handle:
        text = handle.read()
    uri = None
    for line in text.splitlines():
        if line.startswith("uri:"):
            value = line[4:].strip()
            uri = json.loads(value) if value.startswith('"') else value
    return text, uri


def record(tool, opts):
    """Append what this run saw to FAKE_LOG (one JSON line)."""
    entry = {"tool": tool, "argv": sys.argv, "pid": os.getpid()}
    with open("/proc/self/cmdline", "rb") as handle:
        entry["cmdline"] = [part.decode() for part in handle.read().split(b"\0") if part]
    entry["env"] = {k: v for k, v in os.environ.items() if k.startswith(("MONGO", "FAKE_MODE", "LC_", "LANG"))}
    config = opts.get("--config")
    if isinstance(config, str):
        entry["config_path"] = config
        try:
            entry["config_mode"] = oct(os.stat(config).st_mode & 0o777)
            entry["config"], entry["uri"] = read_config(config)
        except OSError as exc:
            entry["config_error"] = str(exc)
    if os.environ.get("FAKE_LOG"):
        with open(os.environ["FAKE_LOG"], "a") as handle:
            handle.write(json.dumps(entry) + "\n")
    return entry


def read_archive(data):
    """(header, [metadata namespaces], {namespace: documents}) of a whole archive; raises on bad structure."""
    if data[:4] != MAGIC:
        raise ValueError("not an archive (magic)")
    pos = 4

    def doc_at(at):
        size = struct.unpack_from("<i", data, at)[0]
        return size, simple(data[at:at + size])

    size, header = doc_at(pos)
    pos += size
    metadata = []
    while data[pos:pos + 4] != TERMINATOR:
        size, meta = doc_at(pos)
        metadata.append("%s.%s" % (meta["db"], meta["collection"]))
        pos += size
    pos += 4
    counts = {}
    while pos < len(data):
        size, head = doc_at(pos)
        pos += size
        namespace = "%s.%s" % (head["db"], head["collection"])
        counts.setdefault(namespace, 0)
        if head.get("EOF"):
            if data[pos:pos + 4] != TERMINATOR:
                raise ValueError("no terminator after EOF header")
            pos += 4
            continue
        while data[pos:pos + 4] != TERMINATOR:
            pos += struct.unpack_from("<i", data, pos)[0]
            counts[namespace] += 1
            if pos > len(data):
                raise ValueError("truncated")
        pos += 4
    return header, metadata, counts


def simple(doc):
    out = {}
    pos = 4
    while pos < len(doc) - 1:
        kind = doc[pos]
        end = doc.index(b"\x00", pos + 1)
        name = doc[pos + 1:end].decode()
        pos = end + 1
        if kind == 0x02:
            size = struct.unpack_from("<i", doc, pos)[0]
            out[name] = doc[pos + 4:pos + 3 + size].decode()
            pos += 4 + size
        elif kind == 0x08:
            out[name] = doc[pos] == 1
            pos += 1
        elif kind == 0x10:
            out[name] = struct.unpack_from("<i", doc, pos)[0]
            pos += 4
        elif kind == 0x12:
            out[name] = struct.unpack_from("<q", doc, pos)[0]
            pos += 8
        elif kind == 0x03:
            pos += struct.unpack_from("<i", doc, pos)[0]
        else:
            break
    return out
