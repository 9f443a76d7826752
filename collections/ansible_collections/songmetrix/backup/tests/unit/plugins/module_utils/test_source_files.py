import io
import os
import tarfile

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.source_files import FilesSource


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print(1)\n")
    (tmp_path / "app" / "cache").mkdir()
    (tmp_path / "app" / "cache" / "blob.bin").write_bytes(b"\0" * 10)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text("log\n")
    (tmp_path / "top.txt").write_text("top\n")
    os.symlink("top.txt", str(tmp_path / "link"))
    os.chmod(str(tmp_path / "top.txt"), 0o640)
    return tmp_path


def names(params):
    source = FilesSource(params, None)
    buf = io.BytesIO()
    source._write_tar(buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_everything_with_links_and_modes(tree):
    members = names({"path": str(tree)})
    assert set(members) == {"app", "app/main.py", "app/cache", "app/cache/blob.bin", "logs", "logs/a.log",
                            "top.txt", "link"}
    assert members["link"].issym() and members["link"].linkname == "top.txt"
    assert members["top.txt"].mode & 0o777 == 0o640


def test_exclude_prunes_directories_and_globs(tree):
    members = names({"path": str(tree), "exclude": ["cache", "*.log"]})
    assert set(members) == {"app", "app/main.py", "logs", "top.txt", "link"}


def test_include_brings_parents_and_subtrees(tree):
    members = names({"path": str(tree), "include": ["*.py", "logs"]})
    assert set(members) == {"app", "app/main.py", "logs", "logs/a.log"}


def test_nothing_matched_is_an_error(tree):
    with pytest.raises(BackupError, match="nothing to back up"):
        names({"path": str(tree), "include": ["*.nothing"]})
