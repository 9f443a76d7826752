import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import compression
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError


def test_zstd_default_level_and_threads():
    t = compression.build_compressor("zstd")
    assert t.argv[1:] == ["-q", "-c", "-2", "-T0"]
    assert t.info == {"algorithm": "zstd", "level": 2, "tool": "zstd"}


def test_zstd_ultra_levels():
    assert "--ultra" in compression.build_compressor("zstd", 21).argv
    assert "--ultra" not in compression.build_compressor("zstd", 19).argv


def test_gzip_prefers_pigz(monkeypatch):
    monkeypatch.setattr(compression, "_which_optional", lambda name: "/opt/bin/pigz")
    t = compression.build_compressor("gzip", 9, 4)
    assert t.argv == ["/opt/bin/pigz", "-c", "-9", "-p", "4"]


def test_gzip_falls_back_to_gzip(monkeypatch):
    monkeypatch.setattr(compression, "_which_optional", lambda name: None)
    t = compression.build_compressor("gzip")
    assert t.argv[0].endswith("/gzip") and t.argv[1:] == ["-c", "-6"]


def test_none_is_no_transform():
    assert compression.build_compressor("none") is None


@pytest.mark.parametrize(
    "algorithm,level,message",
    [("zstd", -1, "out of range"), ("zstd", 23, "out of range"), ("gzip", 0, "1 to 9"), ("lz4", 13, "1 to 12"),
     ("none", 3, "cannot be set"), ("brotli", None, "must be one of")],
)
def test_bad_levels(algorithm, level, message):
    with pytest.raises(ValidationError, match=message):
        compression.build_compressor(algorithm, level)


def test_negative_threads():
    with pytest.raises(ValidationError, match="compression_threads"):
        compression.build_compressor("zstd", 3, -2)
