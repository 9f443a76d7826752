class ModuleDocFragment(object):
    # Compression options of the streaming pipeline.
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
"""
