"""Secret files for child tools: 0600, named after their owner, and swept once the owner is gone."""

import os
import subprocess
import sys
import time

from ansible_collections.songmetrix.backup.plugins.module_utils.secret_files import (
    MIN_AGE_SECONDS, remove_secret_file, sweep_stale_secret_files, write_secret_file)


def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def old_file(path, content=b"x"):
    path.write_bytes(content)
    then = time.time() - MIN_AGE_SECONDS - 5
    os.utime(path, (then, then))
    return path


def test_written_0600_with_its_owner_pid_in_the_name(tmp_path):
    path = write_secret_file(str(tmp_path), b"uri: \"mongodb://u:p@h/\"\n", ".yaml")
    name = os.path.basename(path)
    assert os.path.dirname(path) == str(tmp_path)
    assert name.startswith(".songmetrix-secret-%d-" % os.getpid()) and name.endswith(".yaml")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert open(path, "rb").read() == b"uri: \"mongodb://u:p@h/\"\n"
    remove_secret_file(path)
    remove_secret_file(path)  # already gone: fine
    assert os.listdir(tmp_path) == []


def test_the_sweep_removes_only_old_files_of_dead_owners(tmp_path):
    gone = dead_pid()
    stale = old_file(tmp_path / (".songmetrix-secret-%d-abc.sql" % gone))
    young = tmp_path / (".songmetrix-secret-%d-new.sql" % gone)
    young.write_bytes(b"x")
    live = old_file(tmp_path / (".songmetrix-secret-%d-abc.yaml" % os.getpid()))
    foreign = old_file(tmp_path / ("songmetrix-secret-%d-abc.sql" % gone))  # not our name
    unnamed = old_file(tmp_path / ".songmetrix-secret-x-abc.sql")
    folder = tmp_path / (".songmetrix-secret-%d-dir" % gone)
    folder.mkdir()
    link = tmp_path / (".songmetrix-secret-%d-link" % gone)
    link.symlink_to(foreign)

    assert sweep_stale_secret_files(str(tmp_path)) == [str(stale)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (young, live, foreign, unnamed, folder, link))


def test_writing_a_secret_file_sweeps_its_folder_first(tmp_path):
    stale = old_file(tmp_path / (".songmetrix-secret-%d-abc.yaml" % dead_pid()))
    path = write_secret_file(str(tmp_path), b"x", ".yaml")
    assert os.listdir(tmp_path) == [os.path.basename(path)] and not stale.exists()


def test_a_missing_folder_is_not_an_error_for_the_sweep(tmp_path):
    assert sweep_stale_secret_files(str(tmp_path / "missing")) == []
