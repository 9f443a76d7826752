"""The collection against a real S3 server (SeaweedFS, tests/seaweedfs.py): dump, verify, backup_info and
prune in one round trip. Unlike moto, SeaweedFS checks the x-amz-checksum-sha256 of every PutObject and
UploadPart, so a stored backup here proves the checksums the storage sends are right."""

import base64
import hashlib
import os

import pytest

from tests.security.planting import next_second

MIB = 1024 * 1024


def test_server_enforces_sha256_checksums(seaweedfs_server, seaweedfs_bucket):
    """What makes this server worth testing against: a wrong checksum is refused (moto stores it)."""
    client = seaweedfs_server.client()
    body = b"payload"
    wrong = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    with pytest.raises(client.exceptions.ClientError) as refused:
        client.put_object(Bucket=seaweedfs_bucket, Key="k", Body=body, ChecksumSHA256=wrong)
    assert refused.value.response["Error"]["Code"] == "BadDigest"
    assert seaweedfs_server.keys(seaweedfs_bucket) == []


def test_dump_verify_info_prune_round_trip(run_module, seaweedfs_server, seaweedfs_bucket, seaweedfs_storage_params,
                                           tmp_path):
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    (source_dir / "blob.bin").write_bytes(os.urandom(17 * MIB))  # parts of 8, 8 and 1 MiB: a multipart upload
    (source_dir / "ünïcødé.txt").write_text("hello\n")
    storage = seaweedfs_storage_params(seaweedfs_bucket, prefix="prod", part_size=8)
    source = dict(engine="files", path=str(source_dir))

    made = []
    for _run in range(2):
        next_second()  # backups of a job are named by the second they start
        res = run_module("dump", dict(job="files", source=source, storage=storage, compression="none"))
        assert res.rc == 0, res.describe()
        made.append(res.result["manifest_key"])
    small_dir = tmp_path / "small"
    small_dir.mkdir()
    (small_dir / "note.txt").write_text("small\n")
    next_second()
    small = run_module("dump", dict(job="files", source=dict(engine="files", path=str(small_dir)),
                                    storage=storage, compression="zstd"))
    assert small.rc == 0, small.describe()  # one PutObject
    made.append(small.result["manifest_key"])

    verify = run_module("verify", dict(job="files", storage=storage, deep=True))
    assert verify.rc == 0 and verify.result["verified"] == 3, verify.describe()

    info = run_module("backup_info", dict(job="files", storage=storage))
    assert info.rc == 0, info.describe()
    assert sorted(b["manifest_key"] for b in info.result["backups"]) == sorted(made)

    pruned = run_module("prune", dict(job="files", storage=storage, retention={"keep_last": 2}))
    assert pruned.rc == 0, pruned.describe()
    assert [d["manifest_key"] for d in pruned.result["deleted"]] == made[:1]
    assert pruned.result["deleted"][0]["outcome"] == "deleted"
    assert pruned.result["bytes_freed"] > 17 * MIB and pruned.result["bytes_noncurrent"] == 0
    left = seaweedfs_server.keys(seaweedfs_bucket, "prod/")
    assert sum(key.endswith(".manifest.json") for key in left) == 2
    assert not seaweedfs_server.pending_uploads(seaweedfs_bucket)
