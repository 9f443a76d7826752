"""The local spool: a backup the storage refused is kept complete, and uploaded by the next run."""

import hashlib
import json
import os
import socket
import time

from engine_helpers import sha256sum


def random_files(root, megabytes):
    root.mkdir()
    for index in range(megabytes):
        (root / ("part%03d.bin" % index)).write_bytes(os.urandom(1024 * 1024))
    return str(root)


def spooled_files(spool_dir):
    found = []
    for dirpath, _dirs, files in os.walk(os.path.join(spool_dir, "songmetrix-spool")):
        found += [os.path.join(dirpath, name) for name in files]
    return sorted(found)


def dump_args(source_path, storage, spool_dir):
    return dict(job="media", source=dict(engine="files", path=source_path), storage=storage,
                compression="none", spool_dir=spool_dir)


def test_upload_failing_after_retries_spools_then_next_run_uploads_and_verifies(
        run_module, tmp_path, s3_server, s3_bucket, s3_proxy, s3_storage_params):
    source = random_files(tmp_path / "media", 20)
    spool_dir = str(tmp_path / "spool")
    os.mkdir(spool_dir)
    storage = s3_storage_params(s3_bucket, endpoint_url=s3_proxy.endpoint_url, part_size=8, retries=1,
                                prefix="prod")
    s3_proxy.fail("UploadPart", status=503, times=None, part_numbers=[2])

    res = run_module("dump", dump_args(source, storage, spool_dir))
    assert res.failed, res.describe()
    assert "kept complete in the spool" in res.msg and "503" in res.msg, res.msg
    assert s3_proxy.count("UploadPart", status=503, injected=True) >= 2  # tried again before giving up
    assert s3_server.keys(s3_bucket) == [] and s3_server.pending_uploads(s3_bucket) == []
    spooled = spooled_files(spool_dir)
    manifests = [p for p in spooled if p.endswith(".manifest.json")]
    assert len(manifests) == 1 and len(spooled) == 3  # artifact, manifest, target.json
    record = json.load(open(manifests[0]))
    artifact = [p for p in spooled if p.endswith(".tar")][0]
    assert sha256sum(artifact) == record["sha256"] and record["stored_size"] > 20 * 1024 * 1024
    target = json.load(open(os.path.join(os.path.dirname(artifact).split("/prod/")[0], "target.json")))
    assert target["bucket"] == s3_bucket and "secret_key" not in json.dumps(target)
    assert res.result["spooled"] == manifests[0]

    res_check = run_module("upload", dict(spool_dir=spool_dir, storage=storage), check_mode=True)
    assert res_check.rc == 0 and len(res_check.result["spool"]["pending"]) == 1, res_check.describe()

    s3_proxy.clear()
    time.sleep(1.1)  # the new backup gets its own second
    res = run_module("dump", dump_args(source, storage, spool_dir))
    assert res.rc == 0, res.describe()
    assert res.result["spool"]["uploaded"] == [manifests[0].split("/songmetrix-spool/")[1].split("/", 1)[1]]
    assert [p for p in spooled_files(spool_dir) if not p.endswith("target.json")] == []
    stored = s3_server.client().get_object(Bucket=s3_bucket, Key=record["artifact"])["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == record["sha256"]
    res_info = run_module("verify", dict(job="media", storage=storage))
    assert res_info.rc == 0 and res_info.result["verified"] == 2, res_info.describe()


def test_unreachable_storage_spools_and_upload_module_drains_later(
        run_module, tmp_path, s3_server, s3_bucket, s3_proxy, s3_storage_params):
    source = random_files(tmp_path / "media", 2)
    spool_dir = str(tmp_path / "spool")
    os.mkdir(spool_dir)
    storage = s3_storage_params(s3_bucket, endpoint_url=s3_proxy.endpoint_url, retries=0, timeout=5)
    s3_proxy.fail("HeadBucket", status=503, times=None)
    res = run_module("dump", dump_args(source, storage, spool_dir))
    assert res.failed and "kept complete in the spool" in res.msg, res.describe()
    assert s3_server.keys(s3_bucket) == []

    # A spooled artifact damaged on the local disk is not uploaded as a backup.
    artifact = [p for p in spooled_files(spool_dir) if p.endswith(".tar")][0]
    original = open(artifact, "rb").read()
    with open(artifact, "r+b") as handle:
        handle.write(b"X")
    s3_proxy.clear()
    res = run_module("upload", dict(spool_dir=spool_dir, storage=storage))
    assert res.failed and "does not match its manifest" in res.msg, res.describe()
    assert s3_server.keys(s3_bucket) == [] and os.path.exists(artifact)

    with open(artifact, "wb") as handle:
        handle.write(original)
    res = run_module("upload", dict(spool_dir=spool_dir, storage=storage))
    assert res.rc == 0 and res.result["changed"] is True and len(res.result["spool"]["uploaded"]) == 1
    assert len(s3_server.keys(s3_bucket)) == 2 and not os.path.exists(artifact)
    res = run_module("upload", dict(spool_dir=spool_dir, storage=storage))
    assert res.rc == 0 and res.result["changed"] is False


def test_endpoint_dying_mid_upload_leaves_no_object_and_spools(
        run_module, tmp_path, s3_server, s3_bucket, s3_proxy, s3_storage_params):
    source = random_files(tmp_path / "media", 30)
    spool_dir = str(tmp_path / "spool")
    os.mkdir(spool_dir)
    storage = s3_storage_params(s3_bucket, endpoint_url=s3_proxy.endpoint_url, part_size=8, retries=1, timeout=5)
    s3_proxy.kill_after("UploadPart", 2)
    res = run_module("dump", dump_args(source, storage, spool_dir))
    assert res.failed and "kept complete in the spool" in res.msg, res.describe()
    # No backup object; only the job's lock, which the dead endpoint kept (it names this host).
    assert s3_server.keys(s3_bucket) == ["media/lock.json"]
    assert s3_server.stranded_lock(s3_bucket, "media")["host"] == socket.gethostname()
    assert len([p for p in spooled_files(spool_dir) if p.endswith(".manifest.json")]) == 1
    # The abort could not reach the dead endpoint: the error says so, and the upload is still pending
    # (what the AbortIncompleteMultipartUpload lifecycle rule of docs/storage.md is for).
    assert "cleaning up" in res.msg and len(s3_server.pending_uploads(s3_bucket)) == 1, res.msg


def test_without_spool_dir_a_failed_upload_just_fails(run_module, tmp_path, s3_bucket, s3_proxy, s3_storage_params):
    source = random_files(tmp_path / "media", 2)
    storage = s3_storage_params(s3_bucket, endpoint_url=s3_proxy.endpoint_url, retries=0)
    s3_proxy.fail("PutObject", status=403, times=None)
    res = run_module("dump", dict(job="media", source=dict(engine="files", path=source), storage=storage))
    assert res.failed and "spool" not in res.msg, res.describe()
    assert "403" in res.msg or "denied" in res.msg.lower()
