"""S3 storage against a real S3 endpoint (moto over HTTP on 127.0.0.1), read back by an independent client.

Part one drives S3Storage directly (multipart streaming, abort, faults, errors); part two runs the
dump module end to end into S3 for every engine.
"""

import base64
import datetime
import hashlib
import io
import json
import os
import socket
import sqlite3
import subprocess
import tarfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.specs import STORAGE_OPTIONS
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_s3 import MIB, S3Storage
from engine_helpers import decompress_cmd, decompress_to, sha256sum, start_module
from tests.servers import free_port

CHUNK = MIB  # what the pipeline hands the writer


def storage_params(server, bucket, endpoint_url=None, **extra):
    """A validated `storage` dict as the module passes it: every option present, None when unset."""
    params = {name: None for name in STORAGE_OPTIONS}
    params.update(type="s3", prefix="", retries=2, timeout=20, bucket=bucket,
                  endpoint_url=endpoint_url or server.endpoint_url, region=server.region,
                  access_key=server.access_key, secret_key=server.secret_key)
    params.update(extra)
    return params


def write_stream(writer, data, chunk=CHUNK):
    for start in range(0, len(data), chunk):
        writer.write(data[start:start + chunk])


def store(storage, key, data, metadata=None, size_hint=None):
    writer = storage.open_writer(key, metadata, size_hint)
    try:
        write_stream(writer, data)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return writer


def download_sha256(server, bucket, key, tmp_path):
    """What an independent client gets: boto3's download_file, then sha256sum."""
    target = str(tmp_path / ("download-" + uuid.uuid4().hex))
    server.client().download_file(bucket, key, target)
    return sha256sum(target), os.path.getsize(target)


def b64_sha256(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def assert_no_secret(server, text):
    assert server.secret_key not in text
    assert server.access_key not in text


@pytest.fixture
def s3(s3_server, s3_bucket):
    """S3Storage on s3_server directly (no proxy)."""
    storage = S3Storage(storage_params(s3_server, s3_bucket))
    yield storage
    storage.close()


# --------------------------------------------------------------------------- streaming writes


def test_multipart_stream_round_trip(s3_server, s3_bucket, s3_proxy, tmp_path):
    storage = S3Storage(storage_params(s3_server, s3_bucket, s3_proxy.endpoint_url, part_size=8))
    data = os.urandom(4 * 8 * MIB + 3 * MIB + 17)  # 4 full parts and a short last one
    metadata = {"job": "app-db", "engine": "postgresql", "database": "Zoë 100% ünïcødé", "kind": "scheduled",
                "started": "2026-01-02T03:04:05Z", "timezone": "Europe/Zürich"}
    store(storage, "prod/app-db/2026/01/02/app-db-x.dump.zst", data, metadata)

    sha, size = download_sha256(s3_server, s3_bucket, "prod/app-db/2026/01/02/app-db-x.dump.zst", tmp_path)
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    head = s3_server.client().head_object(Bucket=s3_bucket, Key="prod/app-db/2026/01/02/app-db-x.dump.zst")
    assert {name: unquote(value) for name, value in head["Metadata"].items()} == metadata
    assert all(value.isascii() for value in head["Metadata"].values())

    parts = sorted((r for r in s3_proxy.requests if r.operation == "UploadPart"), key=lambda r: r.part_number)
    assert [r.part_number for r in parts] == [1, 2, 3, 4, 5]
    assert [r.size for r in parts] == [8 * MIB] * 4 + [3 * MIB + 17]
    for r in parts:  # each part carries its own SHA-256, and no CRC the service might reject
        body = data[(r.part_number - 1) * 8 * MIB:r.part_number * 8 * MIB]
        assert r.headers["x-amz-checksum-sha256"] == b64_sha256(body)
        assert "x-amz-checksum-crc32" not in r.headers
    create = [r for r in s3_proxy.requests if r.operation == "CreateMultipartUpload"]
    assert len(create) == 1 and create[0].headers["x-amz-checksum-algorithm"] == "SHA256"
    complete = [r for r in s3_proxy.requests if r.operation == "CompleteMultipartUpload"]
    assert len(complete) == 1 and complete[0].headers.get("if-none-match") == "*"
    assert s3_proxy.count("PutObject") == 0
    assert s3_server.pending_uploads(s3_bucket) == []


def test_small_stream_is_one_put_object(s3_server, s3_bucket, s3_proxy, tmp_path):
    storage = S3Storage(storage_params(s3_server, s3_bucket, s3_proxy.endpoint_url))
    data = os.urandom(3 * MIB + 5)
    store(storage, "job/small.bin", data, {"job": "job"})
    assert s3_proxy.count("CreateMultipartUpload") == 0 and s3_proxy.count("UploadPart") == 0
    put = [r for r in s3_proxy.requests if r.operation == "PutObject"]
    assert len(put) == 1 and put[0].headers["x-amz-checksum-sha256"] == b64_sha256(data)
    assert put[0].headers.get("if-none-match") == "*"
    assert download_sha256(s3_server, s3_bucket, "job/small.bin", tmp_path)[0] == hashlib.sha256(data).hexdigest()


def test_empty_stream_stores_an_empty_object(s3, s3_server, s3_bucket):
    store(s3, "job/empty.bin", b"")
    assert s3_server.client().head_object(Bucket=s3_bucket, Key="job/empty.bin")["ContentLength"] == 0


def test_at_most_max_concurrency_parts_in_flight(s3_server, s3_bucket, s3_proxy, tmp_path):
    storage = S3Storage(storage_params(s3_server, s3_bucket, s3_proxy.endpoint_url, part_size=8, max_concurrency=2))
    s3_proxy.delay("UploadPart", 0.3)
    data = os.urandom(6 * 8 * MIB)
    store(storage, "job/bounded.bin", data)
    assert s3_proxy.max_in_flight["UploadPart"] == 2
    assert download_sha256(s3_server, s3_bucket, "job/bounded.bin", tmp_path)[0] == hashlib.sha256(data).hexdigest()


def test_size_hint_starts_with_bigger_parts(s3_server, s3_bucket, s3_proxy):
    storage = S3Storage(storage_params(s3_server, s3_bucket, s3_proxy.endpoint_url, part_size=8))
    # 1.5 x 10 GiB within 1,000 parts needs parts of 16 MiB: twice the configured 8.
    data = os.urandom(40 * MIB)
    store(storage, "job/hinted.bin", data, size_hint=10 * 1024 * MIB)
    sizes = sorted((r.part_number, r.size) for r in s3_proxy.requests if r.operation == "UploadPart")
    assert sizes == [(1, 16 * MIB), (2, 16 * MIB), (3, 8 * MIB)]


def test_abort_leaves_no_object_and_no_upload(s3_server, s3_bucket, s3_proxy):
    storage = S3Storage(storage_params(s3_server, s3_bucket, s3_proxy.endpoint_url, part_size=8))
    s3_proxy.delay("UploadPart", 0.3)
    writer = storage.open_writer("job/aborted.bin")
    write_stream(writer, os.urandom(3 * 8 * MIB + MIB))  # parts 1-3 on the wire or done
    writer.abort()  # what the pipeline does on an error or Ctrl-C
    writer.abort()  # twice is harmless
    assert not storage.exists("job/aborted.bin")
    assert s3_server.keys(s3_bucket) == []
    assert s3_server.pending_uploads(s3_bucket) == []
    abort = [r for r in s3_proxy.requests if r.operation == "AbortMultipartUpload"]
    assert len(abort) == 1 and abort[0].status == 204
    # No part reached the endpoint after the abort (it would leave a stray part behind on AWS).
    assert max(r.arrival for r in s3_proxy.requests if r.operation == "UploadPart") < abort[0].arrival
    with pytest.raises(BackupError, match="already aborted"):
        writer.write(b"more")


def test_access_denied_on_part_2_fails_and_cleans_up(s3_server, s3_bucket, s3_proxy):
    storage = S3Storage(storage_params(s3_server, s3_bucket, s3_proxy.endpoint_url, part_size=8, max_concurrency=1))
    s3_proxy.fail("UploadPart", status=403, times=None, part_numbers=[2])
    writer = storage.open_writer("job/denied.bin")
    with pytest.raises(BackupError) as raised:
        write_stream(writer, os.urandom(10 * 8 * MIB))  # fails in write(), long before the stream ends
    writer.abort()
    assert s3_proxy.count("UploadPart") == 2
    message = str(raised.value)
    assert "access denied to s3://%s/job/denied.bin" % s3_bucket in message
    assert "HTTP 403 AccessDenied" in message and "uploading part 2" in message
    assert_no_secret(s3_server, message)
    assert s3_proxy.count("UploadPart", status=403) == 1  # permanent: not retried
    assert s3_server.keys(s3_bucket) == []
    assert s3_server.pending_uploads(s3_bucket) == []
    assert s3_proxy.count("CompleteMultipartUpload") == 0


def test_503s_on_parts_are_retried(s3_server, s3_bucket, s3_proxy, tmp_path):
    storage = S3Storage(storage_params(s3_server, s3_bucket, s3_proxy.endpoint_url, part_size=8, retries=3))
    s3_proxy.fail("UploadPart", status=503, times=2, part_numbers=[2, 4])
    s3_proxy.fail("CompleteMultipartUpload", status=500, times=1)
    data = os.urandom(4 * 8 * MIB + MIB)
    store(storage, "job/retried.bin", data)
    assert s3_proxy.count("UploadPart", status=503) == 4
    assert sorted(r.part_number for r in s3_proxy.requests if r.operation == "UploadPart" and r.status == 200) == [
        1, 2, 3, 4, 5]
    assert s3_proxy.count("CompleteMultipartUpload", status=500) == 1
    assert s3_proxy.count("CreateMultipartUpload") == 1  # a failed part is sent again, not the whole upload
    assert download_sha256(s3_server, s3_bucket, "job/retried.bin", tmp_path)[0] == hashlib.sha256(data).hexdigest()
    assert s3_server.pending_uploads(s3_bucket) == []


def test_503s_beyond_the_retries_fail_and_clean_up(s3_server, s3_bucket, s3_proxy):
    storage = S3Storage(storage_params(s3_server, s3_bucket, s3_proxy.endpoint_url, part_size=8, retries=1))
    s3_proxy.fail("UploadPart", status=503, times=None, part_numbers=[1])
    with pytest.raises(BackupError, match=r"kept failing after 1 retries \(HTTP 503 ServiceUnavailable"):
        store(storage, "job/unlucky.bin", os.urandom(2 * 8 * MIB))
    assert s3_proxy.count("UploadPart", status=503) == 2
    assert s3_server.keys(s3_bucket) == [] and s3_server.pending_uploads(s3_bucket) == []


def test_endpoint_dies_mid_upload(s3_server, s3_bucket, s3_proxy):
    storage = S3Storage(storage_params(s3_server, s3_bucket, s3_proxy.endpoint_url, part_size=8, retries=1,
                                       max_concurrency=1))
    s3_proxy.kill_after("UploadPart", 2)
    writer = storage.open_writer("job/killed.bin")
    with pytest.raises(BackupError) as raised:
        write_stream(writer, os.urandom(6 * 8 * MIB))
        writer.commit()
    writer.abort()
    message = str(raised.value)
    assert "cannot reach the S3 endpoint %s" % s3_proxy.endpoint_url in message
    assert_no_secret(s3_server, message)
    # Nothing became visible; the upload could not be aborted through a dead endpoint: the writer says so.
    assert s3_server.keys(s3_bucket) == []
    assert len(writer.warnings) == 1 and "AbortIncompleteMultipartUpload" in writer.warnings[0]
    assert_no_secret(s3_server, writer.warnings[0])
    assert [u["Key"] for u in s3_server.pending_uploads(s3_bucket)] == ["job/killed.bin"]


def test_commit_never_overwrites(s3, s3_server, s3_bucket):
    store(s3, "job/taken.bin", b"first")
    with pytest.raises(BackupError, match="already exists; a stored backup is never overwritten"):
        s3.open_writer("job/taken.bin")
    # Someone else stores the key while our upload runs: S3 itself refuses the commit (If-None-Match).
    for size in (10, 20 * MIB):
        key = "job/raced-%d.bin" % size
        writer = s3.open_writer(key)
        write_stream(writer, os.urandom(size))
        s3_server.client().put_object(Bucket=s3_bucket, Key=key, Body=b"theirs")
        with pytest.raises(BackupError, match="already exists; a stored backup is never overwritten"):
            writer.commit()
        assert s3_server.client().get_object(Bucket=s3_bucket, Key=key)["Body"].read() == b"theirs"
    assert s3_server.pending_uploads(s3_bucket) == []


# --------------------------------------------------------------------------- object options


def test_storage_class_encryption_and_tags(s3_server, s3_bucket, s3_proxy):
    storage = S3Storage(storage_params(
        s3_server, s3_bucket, s3_proxy.endpoint_url, part_size=8, storage_class="STANDARD_IA", sse="AES256",
        tags={"team": "db ops", "tier": 1},
    ))
    client = s3_server.client()
    for key, size in (("job/one-put.bin", MIB), ("job/multipart.bin", 9 * MIB)):
        store(storage, key, os.urandom(size))
        head = client.head_object(Bucket=s3_bucket, Key=key)
        assert head["StorageClass"] == "STANDARD_IA" and head["ServerSideEncryption"] == "AES256"
        tags = client.get_object_tagging(Bucket=s3_bucket, Key=key)["TagSet"]
        assert sorted((t["Key"], t["Value"]) for t in tags) == [("team", "db ops"), ("tier", "1")]


def test_object_lock_retention(s3_server, s3_proxy):
    bucket = s3_server.create_bucket(object_lock=True)
    try:
        storage = S3Storage(storage_params(s3_server, bucket, s3_proxy.endpoint_url,
                                           object_lock={"mode": "GOVERNANCE", "retain_days": 3}))
        storage.preflight(create=True)
        assert s3_proxy.count("PutObject") == 0  # no probe object: it could not be deleted again
        before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)  # S3 keeps whole seconds
        storage.put_small("job/manifest.json", b"{}", {"job": "job"})
        head = s3_server.client().head_object(Bucket=bucket, Key="job/manifest.json")
        assert head["ObjectLockMode"] == "GOVERNANCE"
        retain = head["ObjectLockRetainUntilDate"] - before
        assert datetime.timedelta(days=3) <= retain < datetime.timedelta(days=3, minutes=5)
        # delete() hides the object behind a delete marker; the locked version stays until retention ends.
        storage.delete("job/manifest.json")
        assert not storage.exists("job/manifest.json")
        versions = s3_server.client().list_object_versions(Bucket=bucket)["Versions"]
        assert [v["Key"] for v in versions] == ["job/manifest.json"]
    finally:
        s3_server.delete_bucket(bucket)


def test_object_lock_without_checksum_sends_content_md5(s3_server, s3_proxy):
    bucket = s3_server.create_bucket(object_lock=True)
    try:
        storage = S3Storage(storage_params(s3_server, bucket, s3_proxy.endpoint_url, checksum="none",
                                           object_lock={"mode": "COMPLIANCE", "retain_days": 1}))
        data = b"locked without sha256"
        storage.put_small("job/a.json", data)
        put = [r for r in s3_proxy.requests if r.operation == "PutObject"][0]
        assert put.headers["content-md5"] == base64.b64encode(hashlib.md5(data).digest()).decode()
        assert not any(name.startswith("x-amz-checksum") for name in put.headers)
    finally:
        s3_server.delete_bucket(bucket)


def test_object_lock_on_a_bucket_without_it_is_refused(s3_server, s3_bucket):
    storage = S3Storage(storage_params(s3_server, s3_bucket, object_lock={"mode": "GOVERNANCE", "retain_days": 1}))
    with pytest.raises(ValidationError, match="S3 bucket %s has no Object Lock enabled" % s3_bucket):
        storage.preflight(create=True)


def test_checksum_options_reach_the_requests(s3_server, s3_bucket, s3_proxy):
    plain = S3Storage(storage_params(s3_server, s3_bucket, s3_proxy.endpoint_url, checksum="none"))
    plain.put_small("job/plain.json", b"{}")
    sdk = S3Storage(storage_params(s3_server, s3_bucket, s3_proxy.endpoint_url, checksum="none",
                                   request_checksum_calculation="when_supported"))
    sdk.put_small("job/sdk.json", b"{}")
    puts = [r for r in s3_proxy.requests if r.operation == "PutObject"]
    assert not any(name.startswith("x-amz-checksum") for name in puts[0].headers)
    assert "x-amz-checksum-crc32" in puts[1].headers  # botocore's default, only when asked for


# --------------------------------------------------------------------------- reads, lists, deletes


def test_exists_get_small_reader_list_and_delete(s3, s3_server, s3_bucket):
    assert not s3.exists("job/a.json")
    s3.put_small("job/a.json", b'{"a": 1}', {"kind": "manual"})
    s3.put_small("job/ab/b.json", b"b")
    s3.put_small("jobs/c.json", b"c")
    s3_server.client().put_object(Bucket=s3_bucket, Key="job/folder/", Body=b"")  # a tool's folder marker
    assert s3.exists("job/a.json") and not s3.exists("job/a")
    assert s3.get_small("job/a.json") == b'{"a": 1}'

    data = os.urandom(3 * MIB + 1)
    store(s3, "job/big.bin", data)
    reader = s3.open_reader("job/big.bin")
    assert reader.size == len(data)
    chunks = iter(lambda: reader.read(MIB), b"")
    assert b"".join(chunks) == data
    reader.close()

    before = datetime.datetime.now().timestamp()
    listed = sorted(s3.list_keys("job/"))
    assert [(i.key, i.size) for i in listed] == [("job/a.json", 8), ("job/ab/b.json", 1), ("job/big.bin", len(data))]
    assert all(abs(i.modified - before) < 120 for i in listed)
    assert sorted(i.key for i in s3.list_keys("job/a")) == ["job/a.json", "job/ab/b.json"]  # a raw key prefix
    assert len(list(s3.list_keys(""))) == 4

    s3.delete("job/a.json")
    s3.delete("job/a.json")  # missing is not an error
    assert not s3.exists("job/a.json")
    with pytest.raises(BackupError, match=r"reading s3://%s/job/a.json failed: it does not exist \(HTTP 404 NoSuchKey"
                       % s3_bucket):
        s3.get_small("job/a.json")


def test_list_keys_paginates(s3, s3_server, s3_bucket):
    client = s3_server.client(max_pool_connections=16)
    keys = ["many/%04d/job-%04d.manifest.json" % (i // 100, i) for i in range(2500)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=s3_bucket, Key=key, Body=b"m"), keys))
    listed = [info.key for info in s3.list_keys("many/")]
    assert sorted(listed) == keys and len(set(listed)) == 2500


def test_describe_and_location_have_no_secrets(s3, s3_server, s3_bucket):
    described = s3.describe()
    assert described == {"type": "s3", "bucket": s3_bucket, "endpoint_url": s3_server.endpoint_url,
                         "region": s3_server.region}
    assert_no_secret(s3_server, json.dumps(described))
    assert s3.location("a/b.json") == "s3://%s/a/b.json" % s3_bucket


# --------------------------------------------------------------------------- errors


def preflight_error(params, create=True):
    storage = S3Storage(params)
    with pytest.raises(BackupError) as raised:
        storage.preflight(create=create)
    return raised.value


def test_wrong_secret_key(s3_server, s3_bucket):
    error = preflight_error(storage_params(s3_server, s3_bucket, secret_key="Wr0ng/" + s3_server.secret_key[6:]))
    assert isinstance(error, ValidationError)
    assert "the secret key does not match the access key at %s" % s3_server.endpoint_url in str(error)
    assert "HTTP 403 SignatureDoesNotMatch" in str(error)
    assert_no_secret(s3_server, str(error))
    assert s3_server.secret_key[6:] not in str(error)


def test_unknown_access_key(s3_server, s3_bucket):
    error = preflight_error(storage_params(s3_server, s3_bucket, access_key="AKIAUNKNOWNKEY000000"))
    assert isinstance(error, ValidationError)
    assert "the access key is not known to %s" % s3_server.endpoint_url in str(error)
    assert "HTTP 403 InvalidAccessKeyId" in str(error) and "AKIAUNKNOWNKEY000000" not in str(error)
    assert_no_secret(s3_server, str(error))


def test_missing_bucket(s3_server):
    error = preflight_error(storage_params(s3_server, "no-such-bucket-here"))
    assert isinstance(error, ValidationError)
    assert str(error) == "S3 bucket no-such-bucket-here does not exist (endpoint %s; HTTP 404 NoSuchBucket)" % (
        s3_server.endpoint_url)


def test_unreachable_endpoint(s3_server, s3_bucket):
    url = "http://127.0.0.1:%d" % free_port()
    error = preflight_error(storage_params(s3_server, s3_bucket, url, retries=1, timeout=5))
    assert not isinstance(error, ValidationError)  # transient: a spool may keep the backup
    assert "cannot reach the S3 endpoint %s after 1 retries" % url in str(error)
    assert_no_secret(s3_server, str(error))


def test_access_denied_to_writes(s3_server, s3_bucket):
    # moto checks HeadBucket as its own action "s3:HeadBucket"; AWS checks s3:ListBucket.
    access_key, secret_key = s3_server.create_credentials(["s3:ListBucket", "s3:HeadBucket", "s3:GetObject"])
    params = storage_params(s3_server, s3_bucket, access_key=access_key, secret_key=secret_key)
    S3Storage(params).preflight(create=False)  # reading is allowed
    error = preflight_error(params)
    assert isinstance(error, ValidationError)
    assert "access denied to s3://%s/.songmetrix-probe-" % s3_bucket in str(error)
    assert "HTTP 403 AccessDenied" in str(error)
    assert secret_key not in str(error) and access_key not in str(error)


def test_no_credentials(s3_server, s3_bucket, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    error = preflight_error(storage_params(s3_server, s3_bucket, access_key=None, secret_key=None))
    assert "no S3 credentials found" in str(error)


def test_options_are_checked_without_network(s3_server):
    def refused(**extra):
        with pytest.raises(ValidationError) as raised:
            S3Storage(storage_params(s3_server, "bucket", "http://127.0.0.1:9", **extra))
        return str(raised.value)

    assert "between 8 and 4096 MiB" in refused(part_size=4)
    assert "between 1 and 64" in refused(max_concurrency=0)
    assert "given together" in refused(secret_key=None)
    assert "not both" in refused(profile="ops")
    assert "kms_key_id needs storage.sse" in refused(kms_key_id="alias/x")
    assert "at most 10 tags" in refused(tags={"t%d" % i: i for i in range(11)})
    assert "ca_bundle" in refused(ca_bundle="/nonexistent/ca.pem")


# --------------------------------------------------------------------------- the dump module into S3


def fetch_backup(server, bucket, result, tmp_path):
    """The manifest object and the artifact as an independent client sees them; checks sha256 and size."""
    client = server.client()
    manifest = json.loads(client.get_object(Bucket=bucket, Key=result["manifest_key"])["Body"].read())
    assert manifest == result["manifest"]
    path = str(tmp_path / os.path.basename(result["artifact"]))
    client.download_file(bucket, result["artifact"], path)
    assert sha256sum(path) == manifest["sha256"]
    assert os.path.getsize(path) == manifest["stored_size"]
    assert result["path"] == "s3://%s/%s" % (bucket, result["artifact"])
    head = client.head_object(Bucket=bucket, Key=result["artifact"])
    assert head["Metadata"]["job"] == manifest["job"]
    assert server.pending_uploads(bucket) == []
    return path, manifest


def dump_to_s3(run_module, s3_storage_params, bucket, job, source, **extra):
    storage = s3_storage_params(bucket, prefix="prod/eu", **extra.pop("storage", {}))
    res = run_module("dump", dict(job=job, source=source, storage=storage, **extra))
    assert res.rc == 0, res.describe()
    assert res.result["artifact"].startswith("prod/eu/%s/" % job)
    return res


def test_dump_postgresql_to_s3(pg_server, pg_database, run_module, s3_server, s3_bucket, s3_storage_params, tmp_path):
    pg_server.psql("CREATE TABLE t (id int PRIMARY KEY, name text); "
                   "INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 5000) g;", dbname=pg_database)
    source = dict(engine="postgresql", host=pg_server.host, port=pg_server.port, user=pg_server.user,
                  password=pg_server.password, database=pg_database)
    res = dump_to_s3(run_module, s3_storage_params, s3_bucket, "pg", source)
    path, manifest = fetch_backup(s3_server, s3_bucket, res.result, tmp_path)
    assert manifest["engine"] == "postgresql" and path.endswith(".dump.zst")
    plain = decompress_to(path, str(tmp_path / "pg.dump"))
    listing = subprocess.run(["pg_restore", "--list", plain], check=True, stdout=subprocess.PIPE).stdout.decode()
    assert "TABLE DATA public t" in listing
    assert_no_secret(s3_server, res.stdout + res.stderr)


def test_dump_mariadb_to_s3(mariadb_server, mariadb_database, run_module, s3_server, s3_bucket, s3_storage_params,
                            tmp_path):
    mariadb_server.sql("CREATE TABLE shop (id INT PRIMARY KEY, name VARCHAR(50)); "
                       "INSERT INTO shop VALUES (1, 'Zoë'), (2, 'O''Brien');", database=mariadb_database)
    source = dict(engine="mariadb", host=mariadb_server.host, port=mariadb_server.port, user=mariadb_server.user,
                  password=mariadb_server.password, database=mariadb_database)
    res = dump_to_s3(run_module, s3_storage_params, s3_bucket, "shop", source, compression="gzip")
    path, manifest = fetch_backup(s3_server, s3_bucket, res.result, tmp_path)
    assert manifest["engine"] == "mariadb" and path.endswith(".sql.gz")
    sql = subprocess.run(decompress_cmd(path), check=True, stdout=subprocess.PIPE).stdout.decode()
    assert "CREATE TABLE `shop`" in sql and "O\\'Brien" in sql


def test_dump_sqlite_to_s3(run_module, s3_server, s3_bucket, s3_storage_params, tmp_path):
    db = str(tmp_path / "app.sqlite3")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO notes (body) VALUES (?)", [("note %d" % i,) for i in range(3000)])
    conn.commit()
    conn.close()
    res = dump_to_s3(run_module, s3_storage_params, s3_bucket, "app-db", dict(engine="sqlite", path=db),
                     compression="lz4")
    path, manifest = fetch_backup(s3_server, s3_bucket, res.result, tmp_path)
    copy = sqlite3.connect(decompress_to(path, str(tmp_path / "copy.sqlite3")))
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT count(*) FROM notes").fetchone()[0] == 3000
    copy.close()


def big_tree(root, size):
    (root / "data").mkdir(parents=True)
    payload = os.urandom(size)
    (root / "data" / "blob.bin").write_bytes(payload)
    (root / "data" / "ünïcødé.txt").write_text("hello\n")
    return payload


def tar_members(path):
    out = subprocess.run(decompress_cmd(path), check=True, stdout=subprocess.PIPE).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}


def test_dump_files_to_s3_with_503s_on_parts(run_module, s3_server, s3_bucket, s3_proxy, s3_storage_params,
                                              tmp_path):
    payload = big_tree(tmp_path / "src", 30 * MIB)
    s3_proxy.fail("UploadPart", status=503, times=1, part_numbers=[1, 3])
    source = dict(engine="files", path=str(tmp_path / "src"))
    res = dump_to_s3(run_module, s3_storage_params, s3_bucket, "files", source, compression="none",
                     storage=dict(endpoint_url=s3_proxy.endpoint_url, part_size=8))
    assert s3_proxy.count("UploadPart", status=503) == 2
    assert s3_proxy.count("UploadPart", status=200) == 4  # 30 MiB of tar in 8 MiB parts
    path, manifest = fetch_backup(s3_server, s3_bucket, res.result, tmp_path)
    members = tar_members(path)
    assert members["data/blob.bin"] == payload and members["data/ünïcødé.txt"] == b"hello\n"


def test_dump_endpoint_killed_mid_upload_leaves_no_object(run_module, s3_server, s3_bucket, s3_proxy,
                                                          s3_storage_params, tmp_path):
    big_tree(tmp_path / "src", 40 * MIB)
    s3_proxy.kill_after("UploadPart", 1)
    storage = s3_storage_params(s3_bucket, s3_proxy.endpoint_url, part_size=8, retries=1, max_concurrency=1)
    res = run_module("dump", dict(job="files", source=dict(engine="files", path=str(tmp_path / "src")),
                                  storage=storage, compression="none"))
    assert res.rc != 0 and "cannot reach the S3 endpoint %s" % s3_proxy.endpoint_url in res.msg, res.describe()
    assert_no_secret(s3_server, res.stdout + res.stderr)
    # Neither artifact nor manifest. The job's lock could not be removed through the dead endpoint:
    # the run says so, and the lock names this host, whose next run takes it over at once.
    assert s3_server.keys(s3_bucket) == ["files/lock.json"]
    assert s3_server.stranded_lock(s3_bucket, "files")["host"] == socket.gethostname()
    assert any("could not remove the lock" in warning for warning in res.warnings), res.describe()


def peak_rss_mib(process):
    """The module's own peak RSS (VmHWM), polled until it exits.

    Not wait4()'s ru_maxrss: Linux counts the forking parent's RSS in it, and this test process
    holds moto's data.
    """
    peak = 0
    while process.poll() is None:
        try:
            with open("/proc/%d/status" % process.pid) as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) // 1024)
        except OSError:
            pass
        time.sleep(0.02)
    return peak


@pytest.mark.slow
def test_dump_memory_is_bounded_and_does_not_grow(s3_server, s3_bucket, s3_storage_params, tmp_path):
    peaks = {}
    for size in (160, 480):  # both far longer than the parts in flight, so both reach the steady state
        src = tmp_path / ("src-%d" % size)
        big_tree(src, size * MIB)
        args = dict(job="mem-%d" % size, source=dict(engine="files", path=str(src)), compression="none",
                    storage=s3_storage_params(s3_bucket, part_size=8, max_concurrency=4))
        process = start_module("dump", args, tmp_path)
        peaks[size] = peak_rss_mib(process)
        out, err = process.communicate()
        assert process.returncode == 0, (out, err)
    # 100 MB + (max_concurrency + 1) x part size, the documented bound; and no growth with the stream
    # (a leak of even 5% of the extra 320 MiB would show; the heap itself varies by a few MiB).
    assert peaks[480] < 100 + 5 * 8, peaks
    assert peaks[480] - peaks[160] < 16, peaks


@pytest.mark.parametrize("case", ["secret", "bucket"])
def test_dump_with_bad_storage_fails_clearly(run_module, s3_server, s3_bucket, s3_storage_params, tmp_path, case):
    db = str(tmp_path / "app.sqlite3")
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    storage = s3_storage_params(s3_bucket)
    if case == "secret":
        storage["secret_key"] = "not-" + s3_server.secret_key
        expected = "the secret key does not match"
    else:
        storage["bucket"] = "missing-" + s3_bucket
        expected = "S3 bucket missing-%s does not exist" % s3_bucket
    res = run_module("dump", dict(job="app", source=dict(engine="sqlite", path=db), storage=storage))
    assert res.rc != 0 and expected in res.msg, res.describe()
    assert_no_secret(s3_server, res.stdout + res.stderr)
    assert s3_server.keys(s3_bucket) == []


def test_many_writers_share_one_storage(s3, s3_server, s3_bucket, tmp_path):
    """The client is thread-safe: uploads from several threads (as verify/upload may do) do not mix."""
    blobs = {"job/t%d.bin" % i: os.urandom(9 * MIB) for i in range(3)}
    threads = [threading.Thread(target=store, args=(s3, key, data)) for key, data in blobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for key, data in blobs.items():
        assert download_sha256(s3_server, s3_bucket, key, tmp_path)[0] == hashlib.sha256(data).hexdigest()
