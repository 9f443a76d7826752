"""Storage folders are 0750 at every level a backup creates: the storage root's missing parents and
<prefix>/<job>/<YYYY>/<MM>/<DD> (os.makedirs gives its mode to the last level only since Python 3.7,
so the levels above were 0755 under the usual umask 022). Local storage and SFTP (a real sshd)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def folder_modes(top: Path, manifest: Path) -> dict:
    """Mode of every folder from ``top`` down to the manifest's folder."""
    modes, folder = {}, manifest.parent
    while True:
        modes[str(folder.relative_to(top.parent))] = stat.S_IMODE(folder.stat().st_mode)
        if folder == top:
            return modes
        folder = folder.parent


def source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("x\n")
    return dict(engine="files", path=str(src))


def test_local_storage_folders_are_0750_all_the_way_down(run_module, tmp_path, umask_022):
    top = tmp_path / "new"
    res = run_module("dump", dict(job="modes", source=source(tmp_path), compression="none",
                                  storage=dict(path=str(top / "nested" / "store"), prefix="team/prod"),
                                  lock=dict(dir=str(tmp_path / "locks"))))
    assert not res.failed, res.describe()
    (manifest,) = top.rglob("*.manifest.json")
    modes = folder_modes(top, manifest)
    assert len(modes) == 9, modes  # new, nested, store, team, prod, modes, YYYY, MM, DD
    assert set(modes.values()) == {0o750}, modes


def test_sftp_storage_folders_are_0750_all_the_way_down(run_module, tmp_path, sftp_storage_params, umask_022):
    top = Path(sftp_storage_params["path"]).parent
    res = run_module("dump", dict(job="modes", source=source(tmp_path), compression="none",
                                  storage=dict(sftp_storage_params, prefix="team/prod"),
                                  lock=dict(dir=str(tmp_path / "locks"))))
    assert not res.failed, res.describe()
    (manifest,) = top.rglob("*.manifest.json")
    modes = folder_modes(top, manifest)
    assert len(modes) == 8, modes  # t-<random>, backups, team, prod, modes, YYYY, MM, DD
    assert set(modes.values()) == {0o750}, modes
