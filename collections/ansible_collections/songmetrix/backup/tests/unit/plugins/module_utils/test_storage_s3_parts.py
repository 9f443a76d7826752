"""S3 storage without a server: the part-size schedule, limits, metadata encoding and error messages."""

from urllib.parse import unquote

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import storage_s3
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_s3 import (
    GIB,
    MAX_PART_SIZE,
    MIB,
    TIB,
    check_part_limits,
    encode_metadata,
    encode_tags,
    first_part_size,
    part_size_for,
    stream_capacity,
)

MAX_PARTS = 10000


def reach(first_size):
    """Bytes 10,000 parts of the schedule hold, added up part by part (independent of stream_capacity)."""
    return sum(part_size_for(number, first_size) for number in range(1, MAX_PARTS + 1))


def test_default_schedule_starts_at_16_mib_and_doubles_every_1000_parts():
    first = first_part_size()
    assert first == 16 * MIB
    assert {part_size_for(n, first) for n in range(1, 1001)} == {16 * MIB}
    assert part_size_for(1001, first) == 32 * MIB
    assert part_size_for(2001, first) == 64 * MIB
    assert part_size_for(9001, first) == MAX_PART_SIZE  # 16 MiB << 9 would be 8 GiB: capped


@pytest.mark.parametrize("part_size_mib", [8, 16, 64, 4096])
def test_a_stream_can_reach_5_tib_within_10000_parts(part_size_mib):
    first = first_part_size(part_size_mib)
    assert reach(first) >= 5 * TIB
    assert stream_capacity(first) == 5 * TIB


@pytest.mark.parametrize("part_size_mib", [8, 16, 4096])
def test_no_part_is_ever_above_5_gib_or_below_the_first(part_size_mib):
    first = first_part_size(part_size_mib)
    sizes = [part_size_for(n, first) for n in range(1, MAX_PARTS + 1)]
    assert max(sizes) <= 5 * GIB and min(sizes) == first
    assert sizes == sorted(sizes)  # never shrinks


def test_the_minimum_still_reaches_5_tib_but_not_the_boto3_default():
    assert reach(8 * MIB) >= 5 * TIB
    # boto3's fixed 8 MiB parts stop at 10,000 x 8 MiB, about 78 GiB: the reason for the schedule.
    assert 10000 * 8 * MIB < 79 * GIB


def test_size_hint_starts_with_parts_that_hold_one_and_a_half_times_the_hint_in_1000_parts():
    hint = 100 * GIB
    first = first_part_size(16, hint)
    assert first % MIB == 0
    assert 1000 * first >= 1.5 * hint
    assert first < 1.5 * hint / 1000 + MIB  # no bigger than it needs to be
    assert first_part_size(16, 10 * MIB) == 16 * MIB  # a small hint never shrinks the configured size
    assert first_part_size(64, 1) == 64 * MIB
    assert first_part_size(16, 6 * TIB) == MAX_PART_SIZE  # capped at S3's maximum part size
    assert first_part_size(16, None) == first_part_size(16, 0) == 16 * MIB


def test_limits_are_refused_clearly():
    check_part_limits(10000, 5 * TIB)
    with pytest.raises(BackupError, match="more than 10000 parts"):
        check_part_limits(10001, 100 * GIB)
    with pytest.raises(BackupError, match="object size limit of 5 TiB"):
        check_part_limits(9000, 5 * TIB + 1)


def test_metadata_values_become_ascii_and_decode_back():
    metadata = {"Job": "app-db", "database": "Zoë", "timezone": "Europe/Zürich", "note": "100% sure",
                "line": "a\nb", "started": "2026-01-02T03:04:05Z"}
    encoded = encode_metadata(metadata)
    assert set(encoded) == {"job", "database", "timezone", "note", "line", "started"}  # S3 lower-cases names
    assert all(value.isascii() and value.isprintable() for value in encoded.values())
    assert encoded["job"] == "app-db" and encoded["started"] == "2026-01-02T03:04:05Z"  # plain ASCII stays readable
    assert encoded["database"] == "Zo%C3%AB"
    assert {name.lower(): unquote(value) for name, value in encoded.items()} == {
        name.lower(): value for name, value in metadata.items()}
    assert encode_metadata(None) == {}


def test_tags_are_url_encoded():
    assert encode_tags({"team": "db ops", "tier": 1, "a&b": "x=y"}) == "a%26b=x%3Dy&team=db+ops&tier=1"


# --------------------------------------------------------------------------- error messages


SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACCESS = "AKIAIOSFODNN7EXAMPLE"


def make_storage(**extra):
    if not storage_s3.HAS_BOTO3:
        pytest.skip("boto3 is not installed")
    params = dict(type="s3", bucket="backups", endpoint_url="https://s3.example.test", region="eu-west-1",
                  access_key=ACCESS, secret_key=SECRET, prefix="", retries=3, timeout=60)
    params.update(extra)
    return storage_s3.S3Storage(params)


def client_error(code, status, message="server says no"):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


@pytest.mark.parametrize("code, status, expected", [
    ("NoSuchBucket", 404, "S3 bucket backups does not exist (endpoint https://s3.example.test; HTTP 404 NoSuchBucket)"),
    ("AccessDenied", 403, "access denied to s3://backups/k by https://s3.example.test (HTTP 403 AccessDenied)"),
    ("403", 403, "access denied to s3://backups/k by https://s3.example.test (HTTP 403)"),
    ("InvalidAccessKeyId", 403, "the access key is not known to https://s3.example.test (HTTP 403 InvalidAccessKeyId)"),
    ("SignatureDoesNotMatch", 403, "the secret key does not match the access key at https://s3.example.test"),
    ("ExpiredToken", 400, "the session token is expired or invalid (HTTP 400 ExpiredToken)"),
    ("PreconditionFailed", 412, "s3://backups/k already exists; a stored backup is never overwritten"),
    ("PermanentRedirect", 301, "the bucket is in another region than storage.region eu-west-1"),
    ("SlowDown", 503, "https://s3.example.test kept failing after 3 retries (HTTP 503 SlowDown"),
    ("InvalidStorageClass", 400, "https://s3.example.test refused it (HTTP 400 InvalidStorageClass: server says no)"),
])
def test_client_errors_are_explained(code, status, expected):
    message = str(make_storage().explain(client_error(code, status), "storing", "k"))
    assert expected in message
    assert SECRET not in message and ACCESS not in message


def test_secrets_echoed_by_a_service_are_masked():
    storage = make_storage(session_token="FQoGZXIvYXdzEXAMPLETOKEN")
    error = client_error("InvalidArgument", 400, "bad header %s %s FQoGZXIvYXdzEXAMPLETOKEN" % (ACCESS, SECRET))
    message = str(storage.explain(error, "storing", "k"))
    assert SECRET not in message and ACCESS not in message and "FQoGZXIvYXdzEXAMPLETOKEN" not in message
    assert "********" in message


def test_transport_errors_are_explained():
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ReadTimeoutError

    storage = make_storage()
    unreachable = str(storage.explain(EndpointConnectionError(endpoint_url="https://s3.example.test/backups"),
                                      "checking"))
    assert "cannot reach the S3 endpoint https://s3.example.test after 3 retries" in unreachable
    assert "no S3 credentials found" in str(storage.explain(NoCredentialsError(), "checking"))
    timeout = str(storage.explain(ReadTimeoutError(endpoint_url="https://s3.example.test"), "reading", "k"))
    assert "did not answer within 60 s" in timeout


def test_object_lock_delete_is_explained():
    storage = make_storage(object_lock={"mode": "COMPLIANCE", "retain_days": 30})
    message = str(storage.explain(client_error("AccessDenied", 403), "deleting", "k"))
    assert "protected by Object Lock" in message


def test_describe_has_no_credentials():
    described = make_storage(session_token="TOKEN-VALUE").describe()
    assert described == {"type": "s3", "bucket": "backups", "endpoint_url": "https://s3.example.test",
                         "region": "eu-west-1"}
    assert not any(value in str(described) for value in (SECRET, ACCESS, "TOKEN-VALUE"))


def test_client_config():
    storage = make_storage(retries=5, timeout=30, max_concurrency=12)
    config = storage._config()
    assert config.retries == {"mode": "standard", "total_max_attempts": 6}
    assert config.connect_timeout == config.read_timeout == 30
    assert config.s3 == {"addressing_style": "path"}  # endpoint_url given
    assert config.max_pool_connections >= 14
    assert config.request_checksum_calculation == "when_required"
    assert make_storage(endpoint_url=None)._config().s3 == {"addressing_style": "auto"}
    assert make_storage(addressing_style="virtual")._config().s3 == {"addressing_style": "virtual"}
