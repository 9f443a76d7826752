"""Deep verify of tar artifacts (files backups, PostgreSQL directory format): GNU tar -t stops reading at the
end-of-archive blocks, and what follows them must neither break the pipe nor hide a damaged archive.

Before the fix, a complete archive followed by more bytes than the pipes hold failed with
"passing the dump to tar failed: [Errno 32] Broken pipe" (uncompressed) or "zstd -d was killed by signal
13" (compressed): at random for real dumps (when tar's exit raced the relay's last write), always here.
"""

import io
import os
import tarfile

import pytest

from tests.security.planting import plant_backup

BLOCK = 512
PIPE_SIZE = 1 << 20
COMPRESSIONS = ["none", "zstd"]


def tar_bytes(members):
    """A tar stream as the files engine writes it (tarfile, PAX, padded to a 10 KiB record)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def second_member_zeroed(first, second):
    """Two members, the second one's header (and first data block) zeroed: tar -t sees the end of the
    archive there, exits 0 and never reads the second member's data."""
    data = tar_bytes([("first", first), ("second", second)])
    offset = BLOCK + -(-len(first) // BLOCK) * BLOCK  # the first member's header and data blocks
    return data[:offset] + bytes(2 * BLOCK) + data[offset + 2 * BLOCK:]


def deep_verify(run_module, root, job="files"):
    res = run_module("verify", dict(job=job, deep=True, storage=dict(path=str(root))))
    problem = (res.result or {}).get("backups", [{}])[0].get("problem")
    return res, problem


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_complete_archive_with_a_long_zero_tail_verifies(run_module, tmp_path, compression):
    """8 MiB of zeros after the end-of-archive blocks: more than every pipe on the way holds."""
    payload = tar_bytes([("data.bin", os.urandom(50000))]) + bytes(8 * PIPE_SIZE)
    planted = plant_backup(tmp_path, "files", payload, engine="files", fmt="tar", compression=compression)
    res, problem = deep_verify(run_module, tmp_path)
    assert res.rc == 0 and problem is None, res.describe()
    checked = res.result["backups"][0]
    # every stored byte was read and hashed, the tail tar never read included
    assert checked["deep"] is True and checked["checked_bytes"] == planted.record["stored_size"]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_truncated_archive_fails_by_tars_exit_status(run_module, tmp_path, compression):
    payload = tar_bytes([("data.bin", os.urandom(50000))])
    plant_backup(tmp_path, "files", payload[:20000], engine="files", fmt="tar", compression=compression)
    res, problem = deep_verify(run_module, tmp_path)
    assert res.failed, res.describe()
    assert "tar exited with status 2" in problem and "Unexpected EOF" in problem, problem


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("second_size", [3000, 4 * PIPE_SIZE])
def test_archive_that_ends_early_fails(run_module, tmp_path, compression, second_size):
    """A zeroed header in the middle ends the archive for tar (exit 0): the data it never read is not
    padding. A small rest used to pass unseen (it fit in the pipe), a big one broke the pipe."""
    payload = second_member_zeroed(os.urandom(5000), os.urandom(second_size))
    plant_backup(tmp_path, "files", payload, engine="files", fmt="tar", compression=compression)
    res, problem = deep_verify(run_module, tmp_path)
    assert res.failed, res.describe()
    assert "tar stopped at the end-of-archive blocks" in problem and "not all zero padding" in problem, problem
    assert "Broken pipe" not in problem and "signal" not in problem, problem


def test_data_appended_after_the_end_of_archive_fails(run_module, tmp_path):
    payload = tar_bytes([("data.bin", os.urandom(5000))]) + b"appended"
    plant_backup(tmp_path, "files", payload, engine="files", fmt="tar", compression="none")
    res, problem = deep_verify(run_module, tmp_path)
    assert res.failed, res.describe()
    end = BLOCK + 10 * BLOCK + 2 * BLOCK  # header, 5000 bytes of data, the two end-of-archive blocks
    # left: tarfile's zero padding up to its 10 KiB record, then the 8 appended bytes
    assert "with %d bytes left" % (len(payload) - end) in problem, problem


def test_damaged_padding_fails(run_module, tmp_path):
    """One byte flipped far into the zero tail (where tar never reads) is not hidden."""
    payload = tar_bytes([("data.bin", os.urandom(5000))]) + bytes(2 * PIPE_SIZE)
    planted = plant_backup(tmp_path, "files", payload, engine="files", fmt="tar", compression="none")
    res, problem = deep_verify(run_module, tmp_path)
    assert res.rc == 0, res.describe()
    damaged = bytearray(planted.artifact_path.read_bytes())
    damaged[-100] = 0x01
    planted.artifact_path.write_bytes(bytes(damaged))
    res, problem = deep_verify(run_module, tmp_path)
    assert res.failed and "not all zero padding" in problem, res.describe()


def test_real_uncompressed_dumps_verify(run_module, pg_server, pg_database, tmp_path):
    """What dump writes with compression none, files and PostgreSQL directory format, verifies deep
    (repeatedly: the old failure was a race)."""
    files = tmp_path / "files"
    files.mkdir()
    for index in range(40):
        (files / ("f%02d.bin" % index)).write_bytes(os.urandom(30000 + index))
    root = tmp_path / "store"
    res = run_module("dump", dict(job="files", source=dict(engine="files", path=str(files)),
                                  storage=dict(path=str(root)), compression="none"))
    assert res.rc == 0, res.describe()
    pg_server.psql("CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g",
                   dbname=pg_database)
    source = dict(engine="postgresql", database=pg_database, format="directory", **pg_server.conn_params())
    res = run_module("dump", dict(job="pgdir", source=source, storage=dict(path=str(root)), compression="none",
                                  spool_dir=str(tmp_path)))
    assert res.rc == 0, res.describe()
    for _round in range(3):
        for job in ("files", "pgdir"):
            res, problem = deep_verify(run_module, root, job)
            assert res.rc == 0 and problem is None, res.describe()
