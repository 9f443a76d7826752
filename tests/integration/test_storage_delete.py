"""delete_many() and replace_small() of every storage against real servers: a local directory, moto's S3
over HTTP (with IAM authentication and bucket policies enforced) and OpenSSH's sshd."""

import base64
import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import StorageError
from ansible_collections.songmetrix.backup.plugins.module_utils.specs import STORAGE_OPTIONS
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_local import LocalStorage
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_s3 import S3Storage
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_sftp import SftpStorage
from engine_helpers import stored_files
from tests.sshd import SshServer


def full(**params):
    """A storage dict as the modules validate it: every option present, None when unset."""
    out = {name: None for name in STORAGE_OPTIONS}
    out.update(prefix="", retries=2, timeout=20)
    out.update(params)
    return out


def s3_storage(s3_storage_params, bucket, endpoint_url=None, **extra):
    return S3Storage(full(**s3_storage_params(bucket, endpoint_url, **extra)))


def fill_bucket(s3_server, bucket, keys):
    client = s3_server.client()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=key.encode()), keys))


def capture_delete_requests(storage):
    """The DeleteObjects requests as sent (headers, body): botocore's before-send hook, nothing altered."""
    sent = []
    storage.client().meta.events.register(
        "before-send.s3.DeleteObjects", lambda request, **kwargs: sent.append((request.headers, request.body)))
    return sent


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def sha256_b64(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# --------------------------------------------------------------------------- S3: delete_many


def test_s3_delete_many_on_a_versioned_bucket_names_the_delete_markers(seaweedfs_server, seaweedfs_storage_params):
    """SeaweedFS (a real S3): without version ids a versioned bucket keeps every object as a noncurrent version
    and answers with delete markers; delete_many reports them in storage.delete_markers."""
    bucket = seaweedfs_server.create_bucket(versioning=True)
    keys = ["job/2026/%02d.sql.gz" % number for number in range(5)]
    fill_bucket(seaweedfs_server, bucket, keys)
    storage = s3_storage(seaweedfs_storage_params, bucket)
    try:
        assert storage.delete_many(keys[:3]) == []
        assert storage.delete_markers == keys[:3]
        assert storage.versioning() == "enabled"
    finally:
        storage.close()
    assert seaweedfs_server.keys(bucket) == keys[3:]  # gone from listings
    versions = seaweedfs_server.client().list_object_versions(Bucket=bucket)
    assert sorted(v["Key"] for v in versions["Versions"]) == keys  # the data is all still there
    assert sorted(m["Key"] for m in versions["DeleteMarkers"]) == keys[:3]
    seaweedfs_server.delete_bucket(bucket)


def test_s3_2500_keys_take_three_delete_objects_requests(s3_server, s3_bucket, s3_proxy, s3_storage_params):
    keys = ["job/2026/%04d.sql.gz" % number for number in range(2500)]
    fill_bucket(s3_server, s3_bucket, keys)
    storage = s3_storage(s3_storage_params, s3_bucket, s3_proxy.endpoint_url)
    sent = capture_delete_requests(storage)
    try:
        assert storage.delete_many(keys) == []
    finally:
        storage.close()
    assert storage.delete_requests == 3
    assert s3_proxy.count("DeleteObjects") == 3 and s3_proxy.count("DeleteObject") == 0
    assert s3_server.keys(s3_bucket) == []
    # In list order, 1000 + 1000 + 500, with a Content-MD5 that matches the body sent. Not quiet: the
    # answer names each key, and whether it only got a delete marker (a versioned bucket).
    bodies = [body.decode() for headers, body in sent]
    assert [body.count("<Key>") for body in bodies] == [1000, 1000, 500]
    assert "<Key>job/2026/0000.sql.gz</Key>" in bodies[0] and "<Key>job/2026/2499.sql.gz</Key>" in bodies[2]
    assert all("<Quiet>false</Quiet>" in body for body in bodies)
    assert storage.delete_markers == []  # an unversioned bucket: every key removed
    for headers, body in sent:
        assert headers["Content-MD5"].decode() == md5_b64(body)
        assert headers["x-amz-checksum-sha256"]  # storage.checksum sha256 (the default)


def test_s3_missing_keys_are_fine_without_checksum_too(s3_server, s3_bucket, s3_proxy, s3_storage_params):
    fill_bucket(s3_server, s3_bucket, ["a/1", "a/3"])
    storage = s3_storage(s3_storage_params, s3_bucket, s3_proxy.endpoint_url, checksum="none")
    sent = capture_delete_requests(storage)
    assert storage.delete_many(["a/1", "a/2-missing", "a/3", "never/there"]) == []
    assert storage.delete_many([]) == []
    storage.close()
    assert storage.delete_requests == 1 and s3_proxy.count("DeleteObjects") == 1
    assert s3_server.keys(s3_bucket) == []
    headers, body = sent[0]
    # botocore's own CRC32 (the operation requires a checksum) plus Content-MD5 for services that ask for it.
    assert headers["Content-MD5"].decode() == md5_b64(body)
    assert "x-amz-checksum-crc32" in headers and "x-amz-checksum-sha256" not in headers


def test_s3_per_key_errors_are_reported(s3_server, s3_bucket, s3_storage_params):
    """A bucket policy denies s3:DeleteObject under locked/: moto answers 200 with an Errors entry per key."""
    keys = ["job/a", "locked/b", "job/c", "locked/d", "job/e"]
    fill_bucket(s3_server, s3_bucket, keys)
    admin = s3_server.client()
    admin.put_bucket_policy(Bucket=s3_bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
        "Resource": "arn:aws:s3:::%s/locked/*" % s3_bucket}]}))
    storage = s3_storage(s3_storage_params, s3_bucket)
    try:
        failures = storage.delete_many(keys)
    finally:
        storage.close()
        admin.delete_bucket_policy(Bucket=s3_bucket)  # lets the fixture empty the bucket
    assert failures == [("locked/b", "AccessDenied: Access Denied"), ("locked/d", "AccessDenied: Access Denied")]
    assert storage.delete_requests == 1
    assert s3_server.keys(s3_bucket) == ["locked/b", "locked/d"]


def test_s3_a_failing_request_raises_after_the_retries(s3_server, s3_bucket, s3_proxy, s3_storage_params):
    fill_bucket(s3_server, s3_bucket, ["k/1", "k/2"])
    s3_proxy.fail("DeleteObjects", status=500, times=None)
    storage = s3_storage(s3_storage_params, s3_bucket, s3_proxy.endpoint_url)
    with pytest.raises(StorageError) as caught:
        storage.delete_many(["k/1", "k/2"])
    storage.close()
    message = str(caught.value)
    assert "deleting 2 objects from s3://%s failed" % s3_bucket in message
    assert s3_proxy.endpoint_url in message and "HTTP 500 InternalError" in message
    assert "0 of 2 keys were deleted before" in message
    assert s3_server.secret_key not in message
    assert storage.delete_requests == 1 and s3_proxy.count("DeleteObjects") == 3  # 1 + storage.retries
    assert s3_server.keys(s3_bucket) == ["k/1", "k/2"]


def test_s3_endpoint_dying_after_the_first_batch(s3_server, s3_bucket, s3_proxy, s3_storage_params):
    keys = ["k/%04d" % number for number in range(1500)]
    stored = keys[::50]  # enough to see which went; the others are missing keys, deleted all the same
    fill_bucket(s3_server, s3_bucket, stored)
    s3_proxy.kill_after("DeleteObjects", 1)
    storage = s3_storage(s3_storage_params, s3_bucket, s3_proxy.endpoint_url, retries=1)
    with pytest.raises(StorageError) as caught:
        storage.delete_many(keys)
    storage.close()
    message = str(caught.value)
    assert "deleting 500 objects from s3://%s failed: cannot reach the S3 endpoint %s" % (
        s3_bucket, s3_proxy.endpoint_url) in message
    assert "1000 of 1500 keys were deleted before" in message
    assert storage.delete_requests == 2
    assert s3_server.keys(s3_bucket) == [key for key in stored if key >= "k/1000"]  # the first 1000 went first


# --------------------------------------------------------------------------- S3: replace_small


def test_s3_replace_small_overwrites_with_the_object_options(s3_server, s3_bucket, s3_proxy, s3_storage_params):
    storage = s3_storage(s3_storage_params, s3_bucket, s3_proxy.endpoint_url,
                         storage_class="STANDARD_IA", sse="AES256", tags={"team": "db"})
    storage.replace_small("job/last-attempt.json", b'{"n": 1}')  # nothing there yet
    storage.replace_small("job/last-attempt.json", b'{"n": 2}')
    assert storage.get_small("job/last-attempt.json") == b'{"n": 2}'
    storage.close()
    assert s3_server.keys(s3_bucket) == ["job/last-attempt.json"]
    puts = [r for r in s3_proxy.requests if r.operation == "PutObject"]
    assert len(puts) == 2
    assert not any("if-none-match" in put.headers for put in puts)
    assert [put.headers["x-amz-checksum-sha256"] for put in puts] == [sha256_b64(b'{"n": 1}'), sha256_b64(b'{"n": 2}')]
    head = s3_server.client().head_object(Bucket=s3_bucket, Key="job/last-attempt.json")
    assert head["StorageClass"] == "STANDARD_IA" and head["ServerSideEncryption"] == "AES256"


def test_s3_replace_small_with_object_lock_is_not_locked(s3_server, s3_storage_params):
    bucket = s3_server.create_bucket(object_lock=True)
    try:
        storage = s3_storage(s3_storage_params, bucket, object_lock={"mode": "COMPLIANCE", "retain_days": 1})
        storage.replace_small("job/last-attempt.json", b"1")
        storage.replace_small("job/last-attempt.json", b"2")
        assert storage.get_small("job/last-attempt.json") == b"2"
        storage.close()
        head = s3_server.client().head_object(Bucket=bucket, Key="job/last-attempt.json")
        assert "ObjectLockMode" not in head
    finally:
        s3_server.delete_bucket(bucket)


# --------------------------------------------------------------------------- local


def test_local_delete_many_reports_what_it_cannot_remove(tmp_path):
    root = tmp_path / "backups"
    storage = LocalStorage(str(root))
    for key in ("job/a.gz", "job/b.gz", "job/c.gz"):
        storage.put_small(key, b"x")
    (root / "job" / "dir.gz").mkdir()
    (root / "job" / "dir.gz" / "inside").write_bytes(b"y")  # a non-empty directory: unlink fails for root too
    failures = storage.delete_many(["job/a.gz", "job/missing.gz", "job/dir.gz", "job/c.gz"])
    assert failures == [("job/dir.gz", "Is a directory")]
    assert storage.delete_requests == 4
    assert stored_files(root) == ["job/b.gz", "job/dir.gz/inside"]


def test_local_replace_small_overwrites_and_leaves_no_temp_file(tmp_path):
    root = tmp_path / "backups"
    storage = LocalStorage(str(root))
    storage.replace_small("job/last-attempt.json", b"first")
    storage.replace_small("job/last-attempt.json", b"second")
    path = root / "job" / "last-attempt.json"
    assert path.read_bytes() == b"second"
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(root / "job")) == ["last-attempt.json"]


# --------------------------------------------------------------------------- SFTP


@pytest.fixture
def sftp(sftp_storage_params):
    storage = SftpStorage(full(**sftp_storage_params))
    yield storage
    storage.close()


def test_sftp_delete_many_pipelined_with_failures(sftp, sftp_storage_params, sftp_server):
    root = Path(sftp_storage_params["path"])
    keys = ["job/%03d.gz" % number for number in range(200)]  # more than the requests kept in flight
    for key in keys:
        sftp.put_small(key, b"x")
    sftp.put_small("job/kept.gz", b"k")
    (root / "job" / "dir.gz").mkdir()
    (root / "job" / "dir.gz" / "inside").write_bytes(b"y")
    doomed = keys[:100] + ["job/dir.gz", "job/missing.gz"] + keys[100:]
    expected = [("job/dir.gz", "Failure")]  # what OpenSSH's sftp-server says for EISDIR
    if sftp_server.user != "root":
        # A file in a directory the login user cannot write: removing it is refused.
        (root / "ro").mkdir(mode=0o755)
        (root / "ro" / "file.gz").write_bytes(b"z")
        doomed.append("ro/file.gz")
        expected.append(("ro/file.gz", "Permission denied"))
    assert sftp.delete_many(doomed) == expected
    assert sftp.delete_requests == len(doomed)
    left = stored_files(root)
    assert "job/kept.gz" in left and "job/dir.gz/inside" in left
    assert not any(key in left for key in keys)
    assert sftp.delete_many([]) == [] and sftp.delete_requests == len(doomed)


def test_sftp_delete_many_on_a_dying_connection_raises(sftp, sftp_storage_params, sftp_server):
    stop = threading.Event()

    def drop_when_busy():
        # Kill the sessions once the removes are on the wire (and again, should it reconnect).
        while not stop.wait(0.05):
            if sftp.delete_requests:
                sftp_server.drop_sessions()

    dropper = threading.Thread(target=drop_when_busy)
    dropper.start()
    try:
        with pytest.raises(StorageError) as caught:
            sftp.delete_many(["job/missing-%06d" % number for number in range(200000)])
    finally:
        stop.set()
        dropper.join()
    message = str(caught.value)
    assert "deleting objects under sftp://%s@%s:%d" % (sftp_server.user, sftp_server.host, sftp_server.port) in message
    assert "connection to the SFTP server" in message and "of 200000 removes were answered" in message


def test_sftp_replace_small_overwrites_and_leaves_no_temp_file(sftp, sftp_storage_params):
    root = Path(sftp_storage_params["path"])
    sftp.replace_small("job/last-attempt.json", b"first")
    sftp.replace_small("job/last-attempt.json", b"second")
    assert sftp.get_small("job/last-attempt.json") == b"second"
    assert stored_files(root) == ["job/last-attempt.json"]
    assert (root / "job" / "last-attempt.json").stat().st_mode & 0o777 == 0o600


class _NoPosixRenameServer(SshServer):
    """OpenSSH's sftp-server refusing posix-rename@openssh.com, like servers without the extension."""

    def _write_config(self):
        super()._write_config()
        config = self.tmp / "sshd_config"
        text = config.read_text()
        text = text.replace("ForceCommand internal-sftp\n", "ForceCommand internal-sftp -l INFO -P posix-rename\n")
        config.write_text(text)


def test_sftp_replace_small_without_posix_rename_removes_then_renames():
    with _NoPosixRenameServer() as server:
        params = server.storage_params(server.fresh_dir())
        storage = SftpStorage(full(**params))
        try:
            storage.replace_small("job/last-attempt.json", b"first")
            storage.replace_small("job/last-attempt.json", b"second")
            assert storage.get_small("job/last-attempt.json") == b"second"
            storage.put_small("job/other", b"o")
        finally:
            storage.close()
        root = Path(params["path"])
        assert stored_files(root) == ["job/last-attempt.json", "job/other"]
        # The server really refuses the extension (paramiko's own call, outside the storage):
        client = paramiko.SSHClient()
        client.load_host_keys(server.known_hosts)
        client.connect(server.host, server.port, server.user, key_filename=server.private_key,
                       look_for_keys=False, allow_agent=False)
        try:
            with pytest.raises(PermissionError):
                client.open_sftp().posix_rename(str(root / "job/other"), str(root / "job/last-attempt.json"))
        finally:
            client.close()
