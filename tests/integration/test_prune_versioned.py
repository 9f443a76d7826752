"""prune on versioned and Object Lock S3 buckets: what it reports is what S3 did.

A DeleteObjects without version ids removes nothing from a versioned bucket (every Object Lock bucket is
one): each key gets a delete marker and its data stays as a noncurrent version. prune used to report
those backups in ``deleted`` with their bytes in ``bytes_freed``. Now each deleted backup says its
``outcome`` (``deleted`` or ``delete_marker``), ``bytes_freed`` counts only removed data and
``bytes_noncurrent`` the data left behind markers, with a warning.

Run against SeaweedFS (a real S3 implementation, tests/seaweedfs.py) and moto: both answer
DeleteObjects with DeleteMarker: true on a versioned bucket, as AWS documents.
"""

import datetime
import json

import pytest

from tests.history import make_history

UTC = datetime.timezone.utc
JOB = "app"
PREFIX = "prod"


@pytest.fixture(params=["seaweedfs", "moto"])
def server(request):
    return request.getfixturevalue("seaweedfs_server" if request.param == "seaweedfs" else "s3_server")


@pytest.fixture
def bucket_of(server):
    """make(versioning=False, object_lock=False) -> a new bucket on ``server``, removed afterwards."""
    made = []

    def make(versioning=False, object_lock=False):
        name = server.create_bucket(object_lock=object_lock)
        if versioning and not object_lock:
            server.client().put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        made.append(name)
        return name

    yield make
    for name in made:
        server.delete_bucket(name)


def storage_of(server, bucket, **extra):
    params = dict(type="s3", bucket=bucket, endpoint_url=server.endpoint_url, access_key=server.access_key,
                  secret_key=server.secret_key, region=server.region, prefix=PREFIX)
    params.update(extra)
    return params


def six_days(storage):
    today = datetime.datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    return make_history(storage, PREFIX, JOB, [today - datetime.timedelta(days=n) for n in range(6, 0, -1)])


def versions(server, bucket):
    """({key: [versions, newest first]}, {key: [delete marker ids]}) of the whole bucket."""
    kept, markers = {}, {}
    for page in server.client().get_paginator("list_object_versions").paginate(Bucket=bucket):
        for item in page.get("Versions", []):
            kept.setdefault(item["Key"], []).append(item)
        for item in page.get("DeleteMarkers", []):
            markers.setdefault(item["Key"], []).append(item["VersionId"])
    return kept, markers


def prune_args(storage, **extra):
    args = dict(job=JOB, storage=storage, retention={"keep_last": 2}, max_delete_fraction=1.0)
    args.update(extra)
    return args


def warnings_of(result):
    return json.dumps(result.get("warnings") or [])


def test_versioned_bucket_reports_delete_markers_and_frees_nothing(run_module, server, bucket_of):
    bucket = bucket_of(versioning=True)
    storage = storage_of(server, bucket)
    made = six_days(storage)
    doomed = made[:4]

    plan = run_module("prune", prune_args(storage), check_mode=True)
    assert plan.rc == 0, plan.describe()
    assert plan.result["bytes_freed"] == 0, "a plan must not promise bytes a versioned bucket keeps"
    assert {d["outcome"] for d in plan.result["deleted"]} == {"delete_marker"}
    assert plan.result["bytes_noncurrent"] > 0
    assert "would get delete markers" in warnings_of(plan.result)

    res = run_module("prune", prune_args(storage))
    assert res.rc == 0, res.describe()
    deleted = res.result["deleted"]
    assert sorted(d["manifest_key"] for d in deleted) == sorted(b.manifest_key for b in doomed)
    assert res.result["bytes_freed"] == 0, "nothing was freed: S3 only added delete markers"
    assert {d["outcome"] for d in deleted} == {"delete_marker"}, deleted
    assert res.result["bytes_noncurrent"] == sum(d["stored_size"] for d in deleted) > 0
    assert "got delete markers" in warnings_of(res.result), res.describe()
    assert deleted == plan.result["deleted"]

    # What S3 holds: every object of the pruned backups is still there, behind a marker.
    kept, markers = versions(server, bucket)
    for backup in doomed:
        for key in (backup.manifest_key, backup.artifact_key):
            assert len(kept[key]) == 1 and not kept[key][0]["IsLatest"], key
            assert len(markers[key]) == 1, key
    assert sum(kept[key][0]["Size"] for b in doomed for key in (b.manifest_key, b.artifact_key)) == \
        res.result["bytes_noncurrent"]
    info = run_module("backup_info", dict(job=JOB, storage=storage))
    assert info.rc == 0 and len(info.result["backups"]) == 2, info.describe()

    # What the warning says: removing the markers brings a backup back, whole.
    client = server.client()
    back = doomed[-1]
    for key in (back.manifest_key, back.artifact_key):
        client.delete_object(Bucket=bucket, Key=key, VersionId=markers[key][0])
    verified = run_module("verify", dict(storage=storage, manifest_key=back.manifest_key))
    assert verified.rc == 0 and verified.result["verified"] == 1, verified.describe()


def test_object_lock_bucket_keeps_the_locked_versions(run_module, server, bucket_of):
    bucket = bucket_of(object_lock=True)
    storage = storage_of(server, bucket, object_lock={"mode": "COMPLIANCE", "retain_days": 1})
    made = six_days(storage)

    res = run_module("prune", prune_args(storage))
    assert res.rc == 0, res.describe()
    assert len(res.result["deleted"]) == 4
    assert res.result["bytes_freed"] == 0, "nothing was freed: the versions are locked"
    assert {d["outcome"] for d in res.result["deleted"]} == {"delete_marker"}
    assert res.result["bytes_noncurrent"] > 0
    kept, _markers = versions(server, bucket)
    locked = kept[made[0].artifact_key][0]
    assert not locked["IsLatest"]
    # Nobody frees it before its retention date, prune's keys included.
    with pytest.raises(server.client().exceptions.ClientError) as refused:
        server.client().delete_object(Bucket=bucket, Key=made[0].artifact_key, VersionId=locked["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_unversioned_bucket_really_deletes(run_module, server, bucket_of):
    bucket = bucket_of()
    storage = storage_of(server, bucket)
    made = six_days(storage)
    plan = run_module("prune", prune_args(storage), check_mode=True)
    res = run_module("prune", prune_args(storage))
    assert res.rc == 0, res.describe()
    assert {d["outcome"] for d in res.result["deleted"]} == {"deleted"}
    assert res.result["bytes_freed"] == sum(d["stored_size"] for d in res.result["deleted"]) > 0
    assert res.result["bytes_noncurrent"] == 0
    assert res.result["deleted"] == plan.result["deleted"] and plan.result["bytes_freed"] == res.result["bytes_freed"]
    assert "delete markers" not in warnings_of(res.result)
    kept, markers = versions(server, bucket)
    assert not markers and set(kept) == {key for b in made[4:] for key in (b.manifest_key, b.artifact_key)}


def test_plan_says_when_versioning_cannot_be_read(run_module, s3_server, s3_bucket):
    """Without s3:GetBucketVersioning a plan cannot know: it says so (moto: IAM policies)."""
    storage = storage_of(s3_server, s3_bucket)
    six_days(storage)
    access_key, secret_key = s3_server.create_credentials(["s3:*"], deny=["s3:GetBucketVersioning"])
    limited = dict(storage, access_key=access_key, secret_key=secret_key)
    plan = run_module("prune", prune_args(limited), check_mode=True)
    assert plan.rc == 0, plan.describe()
    assert "versioning state of s3://%s/ cannot be read" % s3_bucket in warnings_of(plan.result)
    assert {d["outcome"] for d in plan.result["deleted"]} == {"deleted"}
