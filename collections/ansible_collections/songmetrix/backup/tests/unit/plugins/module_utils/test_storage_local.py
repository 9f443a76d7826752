import os

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_local import LocalStorage


def test_writer_is_invisible_until_commit(tmp_path):
    storage = LocalStorage(str(tmp_path))
    writer = storage.open_writer("job/2026/01/01/job-x.dump.zst")
    writer.write(b"data")
    assert not storage.exists("job/2026/01/01/job-x.dump.zst")
    writer.commit()
    final = tmp_path / "job/2026/01/01/job-x.dump.zst"
    assert final.read_bytes() == b"data"
    assert os.listdir(str(final.parent)) == ["job-x.dump.zst"]
    assert final.stat().st_mode & 0o777 == 0o600


def test_commit_never_overwrites(tmp_path):
    storage = LocalStorage(str(tmp_path))
    storage.put_small("job/a.manifest.json", b"first")
    writer = storage.open_writer("job/a.manifest.json")
    writer.write(b"second")
    with pytest.raises(BackupError, match="already exists"):
        writer.commit()
    assert (tmp_path / "job/a.manifest.json").read_bytes() == b"first"
    assert os.listdir(str(tmp_path / "job")) == ["a.manifest.json"]


def test_abort_removes_partial(tmp_path):
    storage = LocalStorage(str(tmp_path))
    writer = storage.open_writer("job/b.tar")
    writer.write(b"partial")
    writer.abort()
    assert os.listdir(str(tmp_path / "job")) == []


def test_preflight_check_mode_creates_nothing(tmp_path):
    storage = LocalStorage(str(tmp_path / "new" / "dir"))
    storage.preflight(create=False)
    assert not (tmp_path / "new").exists()
    storage.preflight(create=True)
    assert os.listdir(str(tmp_path / "new" / "dir")) == []


def test_relative_path_refused():
    with pytest.raises(ValidationError, match="absolute"):
        LocalStorage("backups")
