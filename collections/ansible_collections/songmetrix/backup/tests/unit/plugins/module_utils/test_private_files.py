"""Private files and folders of a run: 0600/0700, named after their owner, swept once it is gone."""

import os
import subprocess
import sys
import time

from ansible_collections.songmetrix.backup.plugins.module_utils.private_files import (
    MIN_AGE_SECONDS, create_private_dir, remove_private_file, sweep_stale_private_files, write_private_file)


def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def make_old(path):
    then = time.time() - MIN_AGE_SECONDS - 5
    os.utime(path, (then, then), follow_symlinks=False)
    return path


def old_file(path):
    path.write_bytes(b"x")
    return make_old(path)


def test_a_file_is_0600_and_named_after_its_owner_and_kind(tmp_path):
    path = write_private_file(str(tmp_path), "mongodb-config", b"uri: \"mongodb://u:p@h/\"\n", ".yaml")
    name = os.path.basename(path)
    assert os.path.dirname(path) == str(tmp_path)
    assert name.startswith(".songmetrix-private-%d-mongodb-config-" % os.getpid()) and name.endswith(".yaml")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert open(path, "rb").read() == b"uri: \"mongodb://u:p@h/\"\n"
    remove_private_file(path)
    remove_private_file(path)  # already gone: fine
    assert os.listdir(tmp_path) == []


def test_a_folder_is_0700_and_named_after_its_owner_and_kind(tmp_path):
    path = create_private_dir(str(tmp_path), "gpg")
    assert os.path.basename(path).startswith(".songmetrix-private-%d-gpg-" % os.getpid())
    assert oct(os.stat(path).st_mode & 0o777) == "0o700"


def test_the_sweep_removes_only_old_files_and_folders_of_dead_owners(tmp_path):
    gone = dead_pid()
    stale = old_file(tmp_path / (".songmetrix-private-%d-tsql-abc.sql" % gone))
    stale_dir = tmp_path / (".songmetrix-private-%d-pg-directory-dump-abc" % gone)
    (stale_dir / "dump").mkdir(parents=True)
    (stale_dir / "dump" / "toc.dat").write_bytes(b"x")
    make_old(stale_dir)
    young = tmp_path / (".songmetrix-private-%d-tsql-new.sql" % gone)
    young.write_bytes(b"x")
    live = old_file(tmp_path / (".songmetrix-private-%d-mongodb-config-abc.yaml" % os.getpid()))
    foreign = old_file(tmp_path / ("songmetrix-private-%d-tsql-abc.sql" % gone))  # not our name
    unnamed = old_file(tmp_path / ".songmetrix-private-x-abc.sql")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"x")
    link = tmp_path / (".songmetrix-private-%d-gpg-link" % gone)  # a symlink is never followed
    link.symlink_to(outside)
    make_old(link)

    assert sorted(sweep_stale_private_files(str(tmp_path))) == sorted([str(stale), str(stale_dir)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (young, live, foreign, unnamed, outside, link))
    assert (outside / "keep").exists()


def test_making_a_private_file_sweeps_its_folder_first(tmp_path):
    stale = old_file(tmp_path / (".songmetrix-private-%d-sqlite-copy-abc.sqlite3" % dead_pid()))
    path = write_private_file(str(tmp_path), "tsql", b"x", ".sql")
    assert os.listdir(tmp_path) == [os.path.basename(path)] and not stale.exists()


def test_a_missing_folder_is_not_an_error_for_the_sweep(tmp_path):
    assert sweep_stale_private_files(str(tmp_path / "missing")) == []
