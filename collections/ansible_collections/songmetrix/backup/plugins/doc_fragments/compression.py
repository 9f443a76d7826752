class ModuleDocFragment(object):
    # Options of the streaming pipeline: compression, and splitting the stored artifact.
    DOCUMENTATION = r"""
options:
  compression:
    description:
      - Compressor for the stream. Artifacts are standard C(.zst), C(.gz) and C(.lz4) files that the stock
        C(zstd), C(gzip) and C(lz4) tools decompress.
      - C(gzip) uses C(pigz) when it is installed.
    type: str
    default: zstd
    choices: [zstd, gzip, lz4, none]
  compression_level:
    description:
      - Compression level; C(zstd) 1-22 (default 2), C(gzip) 1-9 (default 6), C(lz4) 1-12 (default 1).
    type: int
  compression_threads:
    description:
      - Threads for C(zstd) and C(pigz); V(0) uses every core.
    type: int
    default: 0
  max_chunk_size:
    description:
      - Store the artifact as several objects of at most this size (C(<artifact>.part0001), C(.part0002), ...),
        for a storage with an object or file size limit. A number of bytes, or a size with a binary unit
        (C(512M), C(4G), C(1T)); at least C(1M).
      - The manifest lists every chunk with its size and SHA-256; its C(sha256) is that of the whole artifact.
        The chunks concatenate to the artifact (C(cat)). Verify, restore and prune handle them as one backup.
    type: str
"""
