"""Compressors as pipeline transforms: stock CLI tools writing standard formats.

A stored artifact is a plain .zst/.gz/.lz4 stream, so `zstd -d`, `gunzip` or `lz4 -d` restore it
without this collection.
"""

import os

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import find_tool

ALGORITHMS = ("zstd", "gzip", "lz4", "none")

# algorithm: (file extension, lowest level, highest level, default level)
# zstd defaults to 2, not the CLI's 3: on pg_dump output it stores the same size (0.3% smaller in
# tests/bench) for about 40% less compressor CPU, which matters when the dump tool, the database
# server and the compressor share a small machine.
LEVELS = {
    "zstd": ("zst", 1, 22, 2),
    "gzip": ("gz", 1, 9, 6),
    "lz4": ("lz4", 1, 12, 1),
}


SECRET_FD = "{secret_fd}"  # in a Transform's argv: replaced by the fd number of its secret pipe


class Transform(object):
    """One stage between the source and the sink: a child process reading stdin, writing stdout.

    ``secret`` (a passphrase, an identity) reaches the child through a pipe it reads as /dev/fd/N,
    N replacing SECRET_FD in argv; it is never in argv itself. With ``secret_prompts`` set, the
    child reads it from its terminal instead, answering that many prompts (age's passphrase).
    """

    def __init__(self, name, argv, info, secret=None, secret_prompts=0):
        self.name = name
        self.argv = argv
        self.info = info
        self.secret = secret
        self.secret_prompts = secret_prompts


def compressed_extension(algorithm):
    return LEVELS[algorithm][0] if algorithm in LEVELS else None


def check_options(algorithm, level, threads):
    """Validate compression options; returns the effective level (None for 'none')."""
    if algorithm not in ALGORITHMS:
        raise ValidationError("compression must be one of %s, not %r" % (", ".join(ALGORITHMS), algorithm))
    if threads is not None and threads < 0:
        raise ValidationError("compression_threads must be 0 (all cores) or a positive number, not %d" % threads)
    if algorithm == "none":
        if level is not None:
            raise ValidationError("compression_level cannot be set with compression 'none'")
        return None
    low, high, default = LEVELS[algorithm][1:]
    if level is None:
        return default
    if not low <= level <= high:
        raise ValidationError(
            "compression_level %d is out of range for %s: use %d to %d" % (level, algorithm, low, high)
        )
    return level


def build_compressor(algorithm, level=None, threads=0):
    """The Transform for ``algorithm`` (None for 'none'); validates options and finds the tool."""
    level = check_options(algorithm, level, threads)
    if algorithm == "none":
        return None
    threads = threads or 0
    if algorithm == "zstd":
        tool = find_tool("zstd", package_hint="zstd")
        argv = [tool, "-q", "-c", "-%d" % level, "-T%d" % threads]
        if level > 19:
            argv.insert(1, "--ultra")
    elif algorithm == "gzip":
        # pigz writes the same gzip format using every core; plain gzip is the fallback.
        pigz = _which_optional("pigz")
        if pigz:
            argv = [pigz, "-c", "-%d" % level]
            if threads:
                argv += ["-p", str(threads)]
        else:
            argv = [find_tool("gzip", package_hint="gzip"), "-c", "-%d" % level]
    else:
        argv = [find_tool("lz4", package_hint="lz4"), "-q", "-c", "-%d" % level]
    info = {"algorithm": algorithm, "level": level, "tool": os.path.basename(argv[0])}
    return Transform(info["tool"], argv, info)


def _which_optional(name):
    try:
        return find_tool(name)
    except ValidationError:
        return None


def build_decompressor(algorithm):
    """The Transform that turns a stored stream back into the raw dump (None for 'none')."""
    if algorithm in (None, "none"):
        return None
    if algorithm not in LEVELS:
        raise ValidationError("unknown compression %r in the manifest" % (algorithm,))
    tool = {"zstd": "zstd", "gzip": "gzip", "lz4": "lz4"}[algorithm]
    argv = [find_tool(tool, package_hint=tool), "-d", "-c"]
    if algorithm != "gzip":
        argv.insert(1, "-q")
    return Transform(tool + " -d", argv, {"algorithm": algorithm})
