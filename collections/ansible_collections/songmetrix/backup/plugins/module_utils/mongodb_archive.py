"""Reading the mongodump archive format (``mongodump --archive``) as it streams past.

Layout: magic number, a header document (archive version, server and tool versions), one
metadata document per collection, terminator bytes (0xFFFFFFFF), then namespace segments
(a namespace header document, the collection's documents, terminator) and one end-of-namespace
header (EOF true) plus terminator per collection. Only the 4-byte size of each data document is
read, so counting documents costs one small step per document, not a BSON decode.
"""

import struct

from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import StreamCheck

MAGIC = b"\x6d\xe2\x99\x81"  # 0x8199e26d, little-endian
TERMINATOR = -1
MAX_DOCUMENT = 64 * 1024 * 1024  # BSON documents are at most 16 MiB; anything far above is garbage

# Parser states.
_MAGIC, _HEADER, _METADATA, _NAMESPACE, _DATA, _EOF_TERMINATOR, _STOPPED = range(7)
_FIXED_SIZES = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16,
                0x7F: 0, 0xFF: 0}


def decode_simple(doc):
    """The string, bool and integer fields of a small BSON document; other fields are skipped."""
    out = {}
    pos, end = 4, len(doc) - 1
    while pos < end:
        kind = doc[pos]
        name_end = doc.index(b"\x00", pos + 1)
        name = doc[pos + 1:name_end].decode("utf-8", errors="replace")
        pos = name_end + 1
        if kind in (0x02, 0x0D, 0x0E):  # string, JavaScript code, symbol
            size = struct.unpack_from("<i", doc, pos)[0]
            if kind == 0x02:
                out[name] = doc[pos + 4:pos + 3 + size].decode("utf-8", errors="replace")
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
        elif kind in (0x03, 0x04):  # embedded document, array
            pos += struct.unpack_from("<i", doc, pos)[0]
        elif kind == 0x05:  # binary: size, subtype, bytes
            pos += 5 + struct.unpack_from("<i", doc, pos)[0]
        elif kind in _FIXED_SIZES:
            pos += _FIXED_SIZES[kind]
        else:
            break  # a type these headers never hold: stop, keep what was read
    return out


class ArchiveReader(object):
    """Incremental parser; feed() the bytes in order, then look at the fields or ``error``.

    ``until``: "header" stops after the header document, "prelude" after the collection
    metadata, "end" follows the whole stream, counting documents per namespace.
    """

    def __init__(self, until="end"):
        self.until = until
        self.header = None
        self.collections = []  # "db.collection" of the prelude's metadata documents
        self.prelude_done = False
        self.error = None
        self.documents = {}  # "db.collection" -> documents seen
        self.finished = set()  # namespaces whose end-of-namespace header was seen
        self._state = _MAGIC
        self._buf = bytearray()
        self._skip = 0
        self._namespace = None

    @property
    def stopped(self):
        return self._state == _STOPPED

    def _fail(self, message):
        self.error = message
        self._state = _STOPPED

    def feed(self, chunk):
        if self._state == _STOPPED:
            return
        buf = self._buf
        buf += chunk
        pos = 0
        while self._state != _STOPPED:
            if self._skip:
                step = min(self._skip, len(buf) - pos)
                pos += step
                self._skip -= step
                if self._skip:
                    break
            if len(buf) - pos < 4:
                break
            if self._state == _MAGIC:
                if bytes(buf[pos:pos + 4]) != MAGIC:
                    self._fail("the stream does not start with the mongodump archive magic number")
                    break
                pos += 4
                self._state = _HEADER
                continue
            size = struct.unpack_from("<i", buf, pos)[0]
            if size == TERMINATOR:
                pos += 4
                self._terminator()
                continue
            if size < 5 or size > MAX_DOCUMENT:
                self._fail("bad document size %d at a document boundary" % size)
                break
            if self._state == _DATA:
                self.documents[self._namespace] = self.documents.get(self._namespace, 0) + 1
                self._skip = size
                continue
            if len(buf) - pos < size:
                break
            doc = decode_simple(bytes(buf[pos:pos + size]))
            pos += size
            self._document(doc)
        del buf[:pos]

    def _terminator(self):
        if self._state == _METADATA:
            self.prelude_done = True
            self._state = _NAMESPACE if self.until == "end" else _STOPPED
        elif self._state in (_DATA, _EOF_TERMINATOR):
            self._state = _NAMESPACE
        else:
            self._fail("unexpected terminator bytes")

    def _document(self, doc):
        if self._state == _HEADER:
            self.header = doc
            self._state = _STOPPED if self.until == "header" else _METADATA
        elif self._state == _METADATA:
            self.collections.append("%s.%s" % (doc.get("db", ""), doc.get("collection", "")))
        elif self._state == _NAMESPACE:
            namespace = "%s.%s" % (doc.get("db", ""), doc.get("collection", ""))
            if doc.get("EOF"):
                self.finished.add(namespace)
                self.documents.setdefault(namespace, 0)
                self._state = _EOF_TERMINATOR
            else:
                self._namespace = namespace
                self._state = _DATA
        else:
            self._fail("a document where terminator bytes belong")

    def incomplete(self):
        """Why the stream fed so far is not a whole archive, or None."""
        if self.error:
            return self.error
        if self.header is None:
            return "no archive header"
        if self.until == "header":
            return None
        if self.until == "prelude":
            return None if self.prelude_done else "the archive prelude is incomplete"
        if self._state != _NAMESPACE or self._skip or self._buf:
            return "the archive ends in the middle of a document or segment"
        unfinished = sorted(ns for ns in self.documents if ns not in self.finished)
        if unfinished:
            return "no end-of-collection marker for %s" % ", ".join(unfinished[:5])
        return None

    def server_version(self):
        value = (self.header or {}).get("server_version")
        return value if value and value != "unknown" else None

    def table_counts(self):
        """{"db.collection": documents} of the dumped collections (the oplog, db "", left out)."""
        return dict((ns, n) for ns, n in self.documents.items() if not ns.startswith("."))


class ArchiveCheck(StreamCheck):
    """Stream check of a mongodump archive: the header (server version), and with ``count`` the whole
    stream (documents per collection, a complete structure)."""

    def __init__(self, what, count=True, on_header=None):
        self.what = what
        self.reader = ArchiveReader("end" if count else "header")
        self.needs_whole_stream = count
        self._on_header = on_header

    def feed(self, chunk):
        had_header = self.reader.header is not None
        self.reader.feed(chunk)
        if not had_header and self.reader.header is not None and self._on_header:
            self._on_header(self.reader)

    def finish(self, raw_size):
        if not raw_size:
            return None
        problem = self.reader.incomplete()
        if problem:
            return "%s output is not a complete mongodump archive: %s" % (self.what, problem)
        return None
