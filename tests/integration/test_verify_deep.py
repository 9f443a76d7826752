"""Deep verify on real dumps of every engine: passes on what dump wrote, fails on a cut dump."""

import json
import os
import subprocess

import pytest

from engine_helpers import decompress_cmd, sha256sum


def recompress_cut(root, result, keep_fraction):
    """Replace the artifact with the same format holding only the first part of the raw dump."""
    path = os.path.join(root, result["artifact"])
    raw = subprocess.run(decompress_cmd(path), check=True, stdout=subprocess.PIPE).stdout
    algorithm = result["manifest"]["compression"]["algorithm"]
    tool = {"zstd": ["zstd", "-q", "-c"], "gzip": ["gzip", "-c"], "lz4": ["lz4", "-q", "-c"]}[algorithm]
    data = subprocess.run(tool, input=raw[: int(len(raw) * keep_fraction)], check=True,
                          stdout=subprocess.PIPE).stdout
    with open(path, "wb") as handle:
        handle.write(data)
    record = dict(result["manifest"], sha256=sha256sum(path), stored_size=len(data))
    with open(os.path.join(root, result["manifest_key"]), "w") as handle:
        json.dump(record, handle)


def filled_pg(pg_server, database):
    pg_server.psql("CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g",
                   dbname=database)
    return dict(engine="postgresql", database=database, **pg_server.conn_params())


@pytest.mark.parametrize("fmt,compression", [("custom", "zstd"), ("plain", "gzip"), ("directory", "lz4")])
def test_postgresql_deep_verify(run_module, pg_server, pg_database, tmp_path, fmt, compression):
    root = str(tmp_path / "store")
    source = dict(filled_pg(pg_server, pg_database), format=fmt)
    res = run_module("dump", dict(job="pg", source=source, storage=dict(path=root), compression=compression,
                                  spool_dir=str(tmp_path)))
    assert res.rc == 0, res.describe()
    res_verify = run_module("verify", dict(job="pg", deep=True, storage=dict(path=root)))
    assert res_verify.rc == 0, res_verify.describe()

    recompress_cut(root, res.result, 0.5)
    assert run_module("verify", dict(job="pg", storage=dict(path=root))).rc == 0  # the bytes match the manifest
    res_verify = run_module("verify", dict(job="pg", deep=True, storage=dict(path=root)))
    assert res_verify.failed, res_verify.describe()
    problem = res_verify.result["backups"][0]["problem"]
    expected = {"custom": "pg_restore", "plain": "postgresql dump footer", "directory": "tar"}[fmt]
    assert expected in problem, problem


def test_mariadb_and_files_deep_verify(run_module, mariadb_server, mariadb_database, tmp_path):
    mariadb_server.sql("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40)); "
                       "INSERT INTO t SELECT seq, md5(seq) FROM seq_1_to_5000", database=mariadb_database)
    root = str(tmp_path / "store")
    source = dict(engine="mariadb", database=mariadb_database, **mariadb_server.conn_params())
    res = run_module("dump", dict(job="maria", source=source, storage=dict(path=root)))
    assert res.rc == 0, res.describe()
    files = tmp_path / "files"
    files.mkdir()
    for index in range(50):
        (files / ("f%d.bin" % index)).write_bytes(os.urandom(4096))
    res_files = run_module("dump", dict(job="files", source=dict(engine="files", path=str(files)),
                                        storage=dict(path=root)))
    assert res_files.rc == 0, res_files.describe()
    for job in ("maria", "files"):
        res_verify = run_module("verify", dict(job=job, deep=True, storage=dict(path=root)))
        assert res_verify.rc == 0, res_verify.describe()

    recompress_cut(root, res.result, 0.9)
    res_verify = run_module("verify", dict(job="maria", deep=True, storage=dict(path=root)))
    assert res_verify.failed and "mariadb dump footer" in res_verify.result["backups"][0]["problem"]
