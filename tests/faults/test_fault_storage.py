"""Storage faults through the dump module: S3 refusing parts, the bucket deleted between runs, a full
local disk (a 2 MiB tmpfs), an SFTP connection killed mid-transfer.

Each: the task fails naming the cause, no object that looks like a backup is left (no manifest, no
partial artifact; on S3 no pending multipart upload), and with spool_dir the backup is kept
complete in the spool, as docs/ARCHITECTURE.md documents.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time

import pytest

from fault_helpers import files_under, seed_history
from tests.integration.engine_helpers import start_module

MIB = 1024 * 1024


def random_tree(root, megabytes):
    root.mkdir()
    for index in range(megabytes):
        (root / ("part%02d.bin" % index)).write_bytes(os.urandom(MIB))
    return str(root)


def files_dump(job, source, storage, **extra):
    return dict(job=job, source=dict(engine="files", path=source), storage=storage, compression="none", **extra)


def spooled(spool_dir):
    return [p for p in files_under(os.path.join(spool_dir, "songmetrix-spool")) if p.endswith(".manifest.json")] \
        if os.path.isdir(os.path.join(spool_dir, "songmetrix-spool")) else []


@contextlib.contextmanager
def small_tmpfs(path, size="2m"):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", str(path)], check=True)
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# --------------------------------------------------------------------------- S3


@pytest.mark.parametrize("fault", ["403 on part 2", "500 on part 2 beyond the retries"])
def test_s3_part_refused_leaves_no_object_no_upload_and_spools(run_module, tmp_path, s3_server, s3_bucket, s3_proxy,
                                                               s3_storage_params, fault):
    source = random_tree(tmp_path / "src", 20)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    storage = s3_storage_params(s3_bucket, endpoint_url=s3_proxy.endpoint_url, part_size=8, retries=1,
                                max_concurrency=1)
    history = seed_history(s3_storage_params(s3_bucket), "media")
    before = sorted(s3_server.keys(s3_bucket))
    status = 403 if fault.startswith("403") else 500
    s3_proxy.fail("UploadPart", status=status, times=None, part_numbers=[2])
    res = run_module("dump", files_dump("media", source, storage, spool_dir=str(spool_dir)))
    assert res.failed, res.describe()
    assert str(status) in res.msg and "kept complete in the spool" in res.msg, res.msg
    assert s3_server.secret_key not in res.stdout + res.stderr
    # 403 is final, 500 is tried again
    assert s3_proxy.count("UploadPart", status=status, injected=True) == (1 if status == 403 else 2)
    assert sorted(s3_server.keys(s3_bucket)) == before  # no artifact, no manifest, no attempt record
    assert s3_server.pending_uploads(s3_bucket) == []
    assert s3_proxy.count("AbortMultipartUpload") == 1
    assert len(spooled(str(spool_dir))) == 1
    info = run_module("backup_info", dict(job="media", storage=s3_storage_params(s3_bucket)))
    assert info.result["count"] == len(history) and info.result["incomplete"] == []


def test_s3_bucket_deleted_between_runs(run_module, tmp_path, s3_server, s3_bucket, s3_storage_params):
    """A missing bucket is configuration, not an outage (docs/storage.md): fails at once, nothing spooled,
    the bucket is not recreated behind the user's back; the next run after it is back succeeds."""
    source = random_tree(tmp_path / "src", 1)
    storage = s3_storage_params(s3_bucket, retries=0)
    first = run_module("dump", files_dump("media", source, storage))
    assert first.rc == 0, first.describe()
    s3_server.delete_bucket(s3_bucket)

    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    res = run_module("dump", files_dump("media", source, storage, spool_dir=str(spool_dir)))
    assert res.failed and "S3 bucket %s does not exist" % s3_bucket in res.msg, res.describe()
    assert "spool" not in res.msg and spooled(str(spool_dir)) == []
    assert s3_bucket not in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]

    s3_server.create_bucket(s3_bucket)
    time.sleep(1.1)  # backups are named by the second
    again = run_module("dump", files_dump("media", source, storage, spool_dir=str(spool_dir)))
    assert again.rc == 0, again.describe()
    verified = run_module("verify", dict(job="media", storage=storage))
    assert verified.rc == 0 and verified.result["verified"] == 1, verified.describe()


def test_s3_access_denied_at_preflight_is_not_spooled(run_module, tmp_path, s3_server, s3_bucket, s3_proxy,
                                                      s3_storage_params):
    source = random_tree(tmp_path / "src", 1)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    storage = s3_storage_params(s3_bucket, endpoint_url=s3_proxy.endpoint_url, retries=0)
    s3_proxy.fail("PutObject", status=403, times=None)
    s3_proxy.fail("CreateMultipartUpload", status=403, times=None)
    res = run_module("dump", files_dump("media", source, storage, spool_dir=str(spool_dir)))
    assert res.failed and ("403" in res.msg or "denied" in res.msg.lower()), res.describe()
    assert "spool" not in res.msg and spooled(str(spool_dir)) == []
    assert s3_server.keys(s3_bucket) == [] and s3_server.pending_uploads(s3_bucket) == []


# --------------------------------------------------------------------------- local disk full


def test_local_disk_full_leaves_no_partial_file(run_module, tmp_path):
    source = random_tree(tmp_path / "src", 4)
    with small_tmpfs(tmp_path / "small") as small:
        storage = dict(type="local", path=small)
        history = seed_history(storage, "media")
        before = files_under(small)
        res = run_module("dump", files_dump("media", source, storage))
        left = files_under(small)
        info = run_module("backup_info", dict(job="media", storage=storage))
    assert res.failed, res.describe()
    assert "No space left on device" in res.msg, res.msg
    assert [p for p in left if p not in before and not p.endswith("last-attempt.json")] == [], left
    assert info.result["count"] == len(history) and info.result["incomplete"] == []


def test_local_disk_full_with_spool_keeps_the_backup_in_the_spool(run_module, tmp_path):
    source = random_tree(tmp_path / "src", 4)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    with small_tmpfs(tmp_path / "small") as small:
        res = run_module("dump", files_dump("media", source, dict(type="local", path=small),
                                            spool_dir=str(spool_dir)))
        left = files_under(small)
    assert res.failed and "No space left on device" in res.msg, res.describe()
    assert "kept complete in the spool" in res.msg
    assert [p for p in left if ".partial" in p or p.endswith((".tar", ".manifest.json"))] == [], left
    assert len(spooled(str(spool_dir))) == 1


def test_full_spool_after_a_storage_failure_fails_naming_both(run_module, tmp_path, s3_bucket, s3_proxy,
                                                              s3_storage_params):
    source = random_tree(tmp_path / "src", 4)
    storage = s3_storage_params(s3_bucket, endpoint_url=s3_proxy.endpoint_url, retries=0)
    s3_proxy.fail("HeadBucket", status=503, times=None)
    with small_tmpfs(tmp_path / "spool") as spool_dir:
        res = run_module("dump", files_dump("media", source, storage, spool_dir=spool_dir))
        left = files_under(spool_dir)
    assert res.failed, res.describe()
    assert "keeping the backup in the spool failed too" in res.msg and "No space left on device" in res.msg, res.msg
    assert [p for p in left if p.endswith((".tar", ".manifest.json")) or ".partial" in p] == [], left


# --------------------------------------------------------------------------- SFTP


def test_sftp_connection_killed_mid_transfer(run_module, tmp_path, sftp_server, sftp_storage_params):
    source = random_tree(tmp_path / "src", 40)
    storage = dict(sftp_storage_params)
    history = seed_history(storage, "media")
    root = storage["path"]
    before = files_under(root)
    proc = start_module("dump", files_dump("media", source, storage), tmp_path)
    try:
        deadline = time.monotonic() + 60
        # The artifact's temp file (".media-<stamp>.tar.partial-..."), not the job lock's: a lock written
        # over a dropped connection is retried on a new one, and the artifact would then go through.
        while not any(".tar.partial-" in p for p in files_under(root)):
            assert time.monotonic() < deadline and proc.poll() is None, "no transfer started"
            time.sleep(0.02)
        assert sftp_server.drop_sessions() > 0
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result.get("failed"), result
    assert "connection to the SFTP server %s:%d was lost" % (sftp_server.host, sftp_server.port) in result["msg"], \
        result["msg"]
    left = [p for p in files_under(root) if p not in before and not p.endswith("last-attempt.json")]
    assert left == [], left
    info = run_module("backup_info", dict(job="media", storage=storage))
    assert info.result["count"] == len(history) and info.result["incomplete"] == [], info.describe()
