"""The upload module with local storage: an existing file becomes a backup with a manifest."""

import os
import subprocess
import time

from engine_helpers import check_artifact_matches_manifest, decompress_cmd, stored_files


def test_upload_stores_file_with_manifest_and_removes_src_only_when_asked(run_module, tmp_path):
    src = tmp_path / "erp.bak"
    payload = os.urandom(3 * 1024 * 1024) + b"tail"
    src.write_bytes(payload)
    root = str(tmp_path / "store")
    args = dict(job="erp-mssql", src=str(src), engine="mssql", database="erp", storage=dict(path=root))

    res = run_module("upload", args, check_mode=True)
    assert res.rc == 0 and res.result["changed"] is True, res.describe()
    assert res.result["artifact"].endswith(".bak.zst") and not os.path.exists(root)

    res = run_module("upload", args)
    assert res.rc == 0, res.describe()
    path, manifest = check_artifact_matches_manifest(root, res.result)
    assert manifest["engine"] == "mssql" and manifest["database"] == "erp" and manifest["format"] == "bak"
    assert manifest["raw_size"] == len(payload)
    assert subprocess.run(decompress_cmd(path), check=True, stdout=subprocess.PIPE).stdout == payload
    assert src.exists() and "src_removed" not in res.result

    time.sleep(1.1)  # the next backup gets its own second
    res = run_module("upload", dict(args, compression="none", remove_src=True))
    assert res.rc == 0, res.describe()
    path, manifest = check_artifact_matches_manifest(root, res.result)
    assert path.endswith(".bak") and open(path, "rb").read() == payload
    assert res.result["src_removed"] is True and not src.exists()


def test_upload_refuses_bad_src_before_writing(run_module, tmp_path):
    root = str(tmp_path / "store")
    for src, message in ((str(tmp_path / "missing.bak"), "cannot be read"), (str(tmp_path), "not a regular file"),
                         ("relative.bak", "absolute file path")):
        res = run_module("upload", dict(job="j", src=src, storage=dict(path=root)))
        assert res.failed and message in res.msg, res.describe()
    res = run_module("upload", dict(src=str(tmp_path / "x"), storage=dict(path=root)))
    assert res.failed and "job" in res.msg
    empty = tmp_path / "empty.bak"
    empty.write_bytes(b"")
    res = run_module("upload", dict(job="j", src=str(empty), storage=dict(path=root)))
    assert res.failed and "empty" in res.msg, res.describe()
    assert not os.path.exists(root) or stored_files(root) == []
