import os
import stat

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.host_dirs import (
    make_dirs,
    open_private_dir,
    open_private_file,
)


def mode(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_make_dirs_gives_every_level_the_mode(tmp_path, umask_022):
    make_dirs(str(tmp_path / "a/b/c"), 0o750)
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o750] * 3
    make_dirs(str(tmp_path / "a/b/c"), 0o750)  # exists: nothing to do
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        make_dirs(str(tmp_path / "file/x"), 0o750)


def test_a_private_dir_is_created_0700_with_its_parents_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        fd = open_private_dir(str(tmp_path / "x/locks"), "lock.dir")
    finally:
        os.umask(old)
    os.close(fd)
    assert mode(tmp_path / "x") == mode(tmp_path / "x/locks") == 0o700


def test_a_private_dir_refuses_symlinks_other_owners_and_shared_modes(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    for given in (str(tmp_path / "link"), str(tmp_path / "link") + "/"):
        with pytest.raises(ValidationError, match="lock.dir .*link is a symbolic link"):
            open_private_dir(given, "lock.dir")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(str(shared), 0o1777)
    with pytest.raises(ValidationError, match=r"can be written by group or others \(mode 1777\)"):
        open_private_dir(str(shared), "lock.dir")
    assert mode(shared) == 0o1777  # refused, never "fixed": it may be a shared folder such as /tmp
    if os.geteuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(str(foreign), 65534, 65534)
        with pytest.raises(ValidationError, match="belongs to uid 65534, not to this user"):
            open_private_dir(str(foreign), "lock.dir")
    (tmp_path / "plain").write_text("")
    with pytest.raises(ValidationError, match="cannot be opened as a folder"):
        open_private_dir(str(tmp_path / "plain"), "lock.dir")


def test_a_private_file_is_never_a_symlink_a_fifo_or_a_hard_link(tmp_path):
    fd = open_private_dir(str(tmp_path / "d"), "lock.dir")
    try:
        os.close(open_private_file(fd, "ok.lock", "ok"))
        assert mode(tmp_path / "d/ok.lock") == 0o600
        (tmp_path / "target").write_text("keep")
        os.symlink(str(tmp_path / "target"), str(tmp_path / "d/link.lock"))
        with pytest.raises(ValidationError, match="is a symbolic link: refused"):
            open_private_file(fd, "link.lock", "link")
        os.mkfifo(str(tmp_path / "d/fifo.lock"))
        with pytest.raises(ValidationError, match="type fifo"):
            open_private_file(fd, "fifo.lock", "fifo")  # O_NONBLOCK: refused at once, no hang
        os.link(str(tmp_path / "target"), str(tmp_path / "d/hard.lock"))
        with pytest.raises(ValidationError, match="2 links"):
            open_private_file(fd, "hard.lock", "hard")
        assert (tmp_path / "target").read_text() == "keep"
    finally:
        os.close(fd)
