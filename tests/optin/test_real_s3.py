"""Opt-in: the S3 round trip against a real MinIO or S3 endpoint given by environment variables.

    SONGMETRIX_S3_BUCKET=backups-test            (required; an existing bucket the keys may write to)
    SONGMETRIX_S3_ENDPOINT_URL=http://minio:9000 (omit for AWS S3)
    SONGMETRIX_S3_ACCESS_KEY=... SONGMETRIX_S3_SECRET_KEY=...   (omit both for the default credential chain)
    SONGMETRIX_S3_REGION=us-east-1               (optional)
    .venv/bin/python -m pytest tests/optin/test_real_s3.py

Everything is written under a fresh prefix songmetrix-optin/<random>/ and removed afterwards.
Without SONGMETRIX_S3_BUCKET every test here is skipped.
"""

import hashlib
import json
import os
import sqlite3
import uuid

import boto3
import pytest
from botocore.config import Config

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.specs import STORAGE_OPTIONS
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_s3 import MIB, S3Storage

BUCKET = os.environ.get("SONGMETRIX_S3_BUCKET")
if not BUCKET:
    pytest.skip("opt-in suite: set SONGMETRIX_S3_BUCKET (and SONGMETRIX_S3_ENDPOINT_URL, SONGMETRIX_S3_ACCESS_KEY, "
                "SONGMETRIX_S3_SECRET_KEY, SONGMETRIX_S3_REGION) to run it against a real S3 or MinIO",
                allow_module_level=True)

ENDPOINT_URL = os.environ.get("SONGMETRIX_S3_ENDPOINT_URL") or None
ACCESS_KEY = os.environ.get("SONGMETRIX_S3_ACCESS_KEY") or None
SECRET_KEY = os.environ.get("SONGMETRIX_S3_SECRET_KEY") or None
REGION = os.environ.get("SONGMETRIX_S3_REGION") or None


def module_storage(prefix, **extra):
    """The `storage` dict of a module call."""
    params = dict(type="s3", bucket=BUCKET, endpoint_url=ENDPOINT_URL, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                  region=REGION, prefix=prefix)
    params.update(extra)
    return {name: value for name, value in params.items() if value is not None}


def direct_storage(prefix, **extra):
    params = {name: None for name in STORAGE_OPTIONS}
    params.update(retries=3, timeout=60)
    params.update(module_storage(prefix, **extra))
    return S3Storage(params)


@pytest.fixture(scope="module")
def client():
    """An independent plain boto3 client."""
    style = "path" if ENDPOINT_URL else "auto"
    return boto3.client(
        "s3", endpoint_url=ENDPOINT_URL, region_name=REGION, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": style}, request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"),
    )


@pytest.fixture
def prefix(client):
    name = "songmetrix-optin/%s" % uuid.uuid4().hex
    yield name
    for upload in client.list_multipart_uploads(Bucket=BUCKET, Prefix=name + "/").get("Uploads", []):
        client.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=name + "/"):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def test_multipart_round_trip(client, prefix, tmp_path):
    storage = direct_storage(prefix, part_size=8)
    storage.preflight(create=True)
    data = os.urandom(3 * 8 * MIB + 123)
    key = prefix + "/stream.bin"
    writer = storage.open_writer(key, {"job": "optin", "database": "Zoë"})
    for start in range(0, len(data), MIB):
        writer.write(data[start:start + MIB])
    writer.commit()
    target = str(tmp_path / "stream.bin")
    client.download_file(BUCKET, key, target)
    assert sha256_of(target) == hashlib.sha256(data).hexdigest()
    assert client.head_object(Bucket=BUCKET, Key=key)["Metadata"]["database"] == "Zo%C3%AB"
    assert [info.key for info in storage.list_keys(prefix + "/")] == [key]


def test_abort_and_no_overwrite(client, prefix):
    storage = direct_storage(prefix, part_size=8)
    writer = storage.open_writer(prefix + "/aborted.bin")
    writer.write(os.urandom(17 * MIB))
    writer.abort()
    assert not storage.exists(prefix + "/aborted.bin")
    assert client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix + "/").get("Uploads", []) == []

    writer = storage.open_writer(prefix + "/raced.bin")
    writer.write(os.urandom(9 * MIB))
    client.put_object(Bucket=BUCKET, Key=prefix + "/raced.bin", Body=b"theirs")
    with pytest.raises(BackupError, match="already exists"):
        writer.commit()  # If-None-Match: * on CompleteMultipartUpload
    assert client.get_object(Bucket=BUCKET, Key=prefix + "/raced.bin")["Body"].read() == b"theirs"


def test_dump_round_trip(client, prefix, run_module, tmp_path):
    db = str(tmp_path / "app.sqlite3")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [("row %d" % i,) for i in range(5000)])
    conn.commit()
    conn.close()
    res = run_module("dump", dict(job="optin", source=dict(engine="sqlite", path=db), storage=module_storage(prefix)))
    assert res.rc == 0, res.describe()
    manifest = json.loads(client.get_object(Bucket=BUCKET, Key=res.result["manifest_key"])["Body"].read())
    target = str(tmp_path / "artifact")
    client.download_file(BUCKET, res.result["artifact"], target)
    assert sha256_of(target) == manifest["sha256"] == res.result["manifest"]["sha256"]


@pytest.mark.skipif(not SECRET_KEY, reason="needs SONGMETRIX_S3_ACCESS_KEY and SONGMETRIX_S3_SECRET_KEY")
def test_wrong_secret_is_explained_without_secrets(prefix):
    wrong = "X" + SECRET_KEY[1:] if not SECRET_KEY.startswith("X") else "Y" + SECRET_KEY[1:]
    storage = direct_storage(prefix, secret_key=wrong)
    with pytest.raises(BackupError) as raised:
        storage.preflight(create=True)
    message = str(raised.value)
    assert "secret key does not match" in message or "access denied" in message
    assert wrong not in message and SECRET_KEY not in message and ACCESS_KEY not in message
