"""Bad input fails before anything runs or is written, with a message that names the problem."""

import pytest

def files_args(tmp_path, **override):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "f.txt").write_text("x")
    args = dict(job="v", source=dict(engine="files", path=str(src)), storage=dict(path=str(tmp_path / "store")))
    args.update(override)
    return args


@pytest.mark.parametrize("override,expected", [
    (dict(source=dict(engine="oracle", path="/tmp")), "value of engine must be one of"),
    (dict(job="../etc"), "job name '../etc' is not valid"),
    (dict(job="a b;rm -rf /"), "is not valid"),
    (dict(compression_level=-1), "compression_level -1 is out of range for zstd: use 1 to 22"),
    (dict(compression="gzip", compression_level=10), "use 1 to 9"),
    (dict(compression="none", compression_level=3), "cannot be set with compression 'none'"),
    (dict(timezone="Nowhere/City"), "unknown timezone 'Nowhere/City'"),
    (dict(storage=dict(path="relative/dir")), "storage.path must be an absolute directory path"),
    (dict(storage=dict(path="/tmp/x", prefix="a/../b")), "storage prefix 'a/../b' is not valid"),
    (dict(source=dict(engine="postgresql", host="127.0.0.1")), "source.database is required for engine postgresql"),
    (dict(source=dict(engine="sqlite")), "source.path (the database file) is required"),
    (dict(source=dict(engine="sqlite", path="/tmp/x.db", password="hunter2-secret")), "source.password is not used"),
    (dict(spool_dir="/nonexistent/spool"), "spool_dir /nonexistent/spool is not a writable directory"),
])
def test_bad_input(run_module, tmp_path, override, expected):
    res = run_module("dump", files_args(tmp_path, **override))
    assert res.rc == 1, res.result
    assert expected in res.result["msg"]
    assert "hunter2-secret" not in res.stdout
    assert not (tmp_path / "store").exists()


def test_unwritable_storage_path(run_module, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    res = run_module("dump", files_args(tmp_path, storage=dict(path=str(blocker / "backups"))))
    assert res.rc == 1
    assert "storage.path %s is not writable" % (blocker / "backups") in res.result["msg"]


def test_read_only_storage_path(run_module, tmp_path):
    # /proc/sys is not writable even for root: a storage path there must fail cleanly.
    res = run_module("dump", files_args(tmp_path, storage=dict(path="/proc/sys/songmetrix")))
    assert res.rc == 1 and "is not writable" in res.result["msg"]
