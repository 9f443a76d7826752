"""S3-compatible storage (AWS S3, MinIO, B2, R2, Wasabi, GCS interop) with boto3.

An artifact is streamed into a multipart upload: the writer fills one part while up to
``max_concurrency`` earlier parts are uploaded by a small thread pool, so memory stays near
(max_concurrency + 1) x part size whatever the stream's length. A dump's length is unknown and S3
allows 10,000 parts of at most 5 GiB, so part sizes grow (see part_size_for) to let one stream
reach the 5 TiB object limit. A stream shorter than one part is stored with a single PutObject.
Nothing is visible under the key before commit(); on any failure the multipart upload is aborted.

Transient errors (connection resets, timeouts, 5xx, throttling) are retried per request by
botocore's "standard" retry mode: a failed part is sent again, not the whole upload. Permanent
errors (access denied, no such bucket, bad keys) fail at once with a message that names the
bucket, key and endpoint and never contains a credential.
"""

import base64
import datetime
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, StorageError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import ObjectInfo, read_whole

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
        SSLError,
    )

    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
except ImportError as import_error:  # the guard ansible-test sanity asks for; reported by S3Storage()
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = str(import_error)

MIB = 1024 * 1024
GIB = 1024 * MIB
TIB = 1024 * GIB

DEFAULT_PART_MIB = 16
MIN_PART_MIB = 8
MAX_PART_MIB = 4096
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 64
MAX_TAGS = 10  # S3's limit per object

# S3's own limits.
MAX_PARTS = 10000
MAX_PART_SIZE = 5 * GIB
MAX_OBJECT_SIZE = 5 * TIB
# Parts per step of the schedule: the part size doubles after every PARTS_PER_STEP parts.
PARTS_PER_STEP = 1000
# With a size hint, the first part is big enough for this much more than the hint within one step.
HINT_HEADROOM = 1.5
ABORT_ATTEMPTS = 2  # each attempt is itself retried by botocore
DELETE_BATCH = 1000  # S3's limit of keys per DeleteObjects request

# Metadata values go into HTTP headers, which carry ASCII only: every character outside printable
# ASCII (and "%" itself, so decoding is never ambiguous) is percent-encoded as UTF-8, so that
# urllib.parse.unquote() gives back the original value. Plain ASCII values stay readable.
_METADATA_SAFE = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) != "%")

_NOT_FOUND = ("404", "NoSuchKey", "NotFound")
_DENIED = ("AccessDenied", "403", "AllAccessDisabled", "AccountProblem")
_TRANSIENT = ("SlowDown", "Throttling", "RequestTimeout")
# Error codes that say exactly what is wrong, and how to say it (fields: see _client_error_text).
_CLIENT_ERROR_CAUSES = (
    (("InvalidAccessKeyId",), "the access key is not known to {endpoint} ({detail})"),
    (("SignatureDoesNotMatch",), "the secret key does not match the access key at {endpoint} ({detail})"),
    (("ExpiredToken", "InvalidToken", "TokenRefreshRequired"), "the session token is expired or invalid ({detail})"),
    (("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"),
     "the bucket is in another region than storage.region {region} ({detail})"),
)


# --------------------------------------------------------------------------- part schedule (pure)


def first_part_size(part_size_mib=None, size_hint=None):
    """Bytes of the first part: the configured size, or more when ``size_hint`` says the stream is big.

    With a hint, the first PARTS_PER_STEP parts alone hold HINT_HEADROOM x the hint (rounded up
    to whole MiB), so a stream somewhat bigger than its estimate still needs no part-size growth.
    """
    size = (part_size_mib or DEFAULT_PART_MIB) * MIB
    if size_hint:
        wanted = int(size_hint * HINT_HEADROOM) // PARTS_PER_STEP + 1
        size = max(size, -(-wanted // MIB) * MIB)
    return min(size, MAX_PART_SIZE)


def part_size_for(part_number, first_size):
    """Bytes of part ``part_number`` (1-based): doubles every PARTS_PER_STEP parts, capped at 5 GiB."""
    step = (part_number - 1) // PARTS_PER_STEP
    return min(first_size << step, MAX_PART_SIZE)


def stream_capacity(first_size):
    """The longest stream the schedule can take within MAX_PARTS parts and the 5 TiB object limit."""
    total = 0
    for step in range(MAX_PARTS // PARTS_PER_STEP):
        total += PARTS_PER_STEP * part_size_for(step * PARTS_PER_STEP + 1, first_size)
    return min(total, MAX_OBJECT_SIZE)


def check_part_limits(part_number, stored):
    """Refuse a part beyond S3's 10,000 parts or an object beyond 5 TiB, clearly, before sending it."""
    if part_number > MAX_PARTS:
        raise BackupError(
            "the stream is too long for one S3 object: it needs more than %d parts (%.1f GiB stored so far); "
            "raise storage.part_size" % (MAX_PARTS, stored / float(GIB))
        )
    if stored > MAX_OBJECT_SIZE:
        raise BackupError("the stream exceeds S3's object size limit of 5 TiB (%d bytes)" % stored)


# --------------------------------------------------------------------------- helpers (pure)


def encode_metadata(metadata):
    """S3 user metadata from a {str: str} dict; see _METADATA_SAFE for the encoding of values."""
    encoded = {}
    for name, value in (metadata or {}).items():
        encoded[str(name).lower()] = quote(str(value), safe=_METADATA_SAFE)
    return encoded


def encode_tags(tags):
    """The Tagging header value (URL-encoded key=value pairs) of storage.tags."""
    return urlencode(sorted((str(name), "" if value is None else str(value)) for name, value in tags.items()))


def sha256_b64(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def md5_b64(data):
    # An integrity header, not security: usedforsecurity=False keeps it working on FIPS hosts.
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


def _add_content_md5(params, **kwargs):
    """DeleteObjects must carry Content-MD5 or a flexible checksum. botocore >= 1.36 sends only the latter,
    which some S3-compatible services refuse (MissingContentMD5); AWS accepts both together."""
    params["headers"]["Content-MD5"] = md5_b64(params["body"])


def error_code(exc):
    """(HTTP status or None, error code) of a botocore ClientError."""
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = response.get("Error", {}).get("Code") or (str(status) if status else "")
    return status, str(code)


def _status_text(status, code):
    if status and code and code != str(status):
        return "HTTP %s %s" % (status, code)
    return "HTTP %s" % (status or code or "?")


# --------------------------------------------------------------------------- options


def _check_range(params, name, default, low, high, unit=""):
    value = params.get(name)
    if value is None:
        return default
    if not low <= value <= high:
        raise ValidationError("storage.%s must be between %d and %d%s, not %s" % (name, low, high, unit, value))
    return value


def _check_object_lock(lock):
    if not lock:
        return None
    if lock.get("mode") not in ("GOVERNANCE", "COMPLIANCE"):
        raise ValidationError("storage.object_lock.mode must be GOVERNANCE or COMPLIANCE")
    days = lock.get("retain_days")
    if not isinstance(days, int) or days < 1:
        raise ValidationError("storage.object_lock.retain_days must be a whole number of days >= 1")
    return {"mode": lock["mode"], "retain_days": days}


def _check_credentials(params):
    if bool(params.get("access_key")) != bool(params.get("secret_key")):
        raise ValidationError("storage.access_key and storage.secret_key must be given together")
    if params.get("session_token") and not params.get("access_key"):
        raise ValidationError("storage.session_token needs storage.access_key and storage.secret_key")
    if params.get("access_key") and params.get("profile"):
        raise ValidationError("give storage.access_key/secret_key or storage.profile, not both")


def _check_tls(params):
    bundle = params.get("ca_bundle")
    if params.get("validate_certs") is False:
        return False
    if bundle:
        if not os.path.isfile(bundle):
            raise ValidationError("storage.ca_bundle %s is not a readable file" % bundle)
        return bundle
    return None


# --------------------------------------------------------------------------- reader


class S3Reader(object):
    """A stored object opened for reading as a stream; ``size`` is its length."""

    def __init__(self, storage, key, response):
        self._storage = storage
        self._key = key
        self._body = response["Body"]
        self.size = response.get("ContentLength")

    def read(self, count=-1):
        try:
            return self._body.read(None if count is None or count < 0 else count)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise self._storage.explain(exc, "reading", self._key)

    def close(self):
        try:
            self._body.close()
        except (BotoCoreError, OSError):
            pass


# --------------------------------------------------------------------------- writer


class PartBuffer(object):
    """The part being filled, allocated once at its full size.

    Growing a bytearray chunk by chunk reallocates it many times, and the heap fragments over a
    long stream (peak RSS crept up with the stream's length); one allocation per part does not.
    """

    def __init__(self):
        self._data = None
        self.filled = 0

    def fill(self, view, size):
        """Copy as much of ``view`` as fits in a part of ``size`` bytes; returns how much was taken."""
        if self._data is None:
            self._data = bytearray(size)
        count = min(len(self._data) - self.filled, len(view))
        self._data[self.filled:self.filled + count] = view[:count]
        self.filled += count
        return count

    def full(self):
        return self._data is not None and self.filled == len(self._data)

    def take(self):
        """The filled bytes (the buffer itself, no copy); the buffer starts empty again."""
        data, filled = self._data, self.filled
        self._data, self.filled = None, 0
        if data is None:
            return bytearray()
        del data[filled:]  # a short last part: shrinks in place
        return data


class S3Writer(object):
    """One object: a PutObject at commit() if the stream fits in one part, a multipart upload otherwise."""

    def __init__(self, storage, key, metadata, size_hint):
        self._storage = storage
        self.key = key
        self._object_args = storage.object_args(metadata)
        self._first_size = first_part_size(storage.part_size, size_hint)
        self._buffer = PartBuffer()
        self._next_part = 1
        self._stored = 0  # bytes handed to parts so far
        self._upload_id = None
        self._pool = None
        self._slots = threading.BoundedSemaphore(storage.max_concurrency)
        self._futures = []
        self._parts = {}
        self._lock = threading.Lock()
        self._error = None
        self._state = "open"
        self.warnings = []  # what abort() could not clean up, for the task's warnings

    # -- the caller's side (one thread)

    def write(self, data):
        self._check_open()
        view = memoryview(data).cast("B")
        while len(view):
            view = view[self._buffer.fill(view, part_size_for(self._next_part, self._first_size)):]
            if self._buffer.full():
                self._send_buffer()

    def commit(self):
        if self._state != "open":
            raise BackupError("the upload of %s is already %s" % (self._location(), self._state))
        try:
            if self._error is not None:
                raise self._error
            if self._upload_id is None:
                self._storage.put_object(self.key, self._buffer.take(), self._object_args)
            else:
                self._complete()
        except BaseException:
            self.abort()
            raise
        self._state = "committed"

    def abort(self):
        """Stop the parts, abort the multipart upload; never raises (problems go to ``warnings``)."""
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborted"
        self._buffer.take()
        try:
            self._stop_pool()
            if self._upload_id is not None:
                self._abort_upload()
        except Exception as exc:  # abort() must not hide the error that led to it
            self.warnings.append("cleaning up the upload of %s failed: %s" % (self._location(), exc))

    # -- internals

    def _location(self):
        return self._storage.location(self.key)

    def _check_open(self):
        if self._state != "open":
            raise BackupError("the upload of %s is already %s" % (self._location(), self._state))
        if self._error is not None:
            raise self._error

    def _send_buffer(self):
        """A part is full: start the multipart upload (the first time) and hand the part to the pool."""
        check_part_limits(self._next_part, self._stored + self._buffer.filled)
        if self._upload_id is None:
            self._upload_id = self._storage.create_multipart(self.key, self._object_args)
            self._pool = ThreadPoolExecutor(max_workers=self._storage.max_concurrency)
        self._submit(self._buffer.take())

    def _submit(self, body):
        self._acquire_slot()
        try:
            self._futures.append(self._pool.submit(self._upload_part, self._next_part, body))
        except BaseException:
            self._slots.release()
            raise
        self._stored += len(body)
        self._next_part += 1

    def _acquire_slot(self):
        """Wait until fewer than max_concurrency parts are in flight (bounds memory); fail early on errors."""
        self._slots.acquire()
        if self._error is not None:
            self._slots.release()
            raise self._error

    def _upload_part(self, number, body):
        try:
            if self._state != "open":
                return
            etag, checksum = self._storage.upload_part(self.key, self._upload_id, number, body)
            record = {"PartNumber": number, "ETag": etag}
            if checksum:
                record["ChecksumSHA256"] = checksum
            with self._lock:
                self._parts[number] = record
        except BaseException as exc:
            with self._lock:
                if self._error is None:
                    self._error = exc if isinstance(exc, BackupError) else BackupError(
                        "uploading part %d of %s failed: %s" % (number, self._location(), exc)
                    )
        finally:
            self._slots.release()

    def _complete(self):
        if self._buffer.filled:  # the short last part
            check_part_limits(self._next_part, self._stored + self._buffer.filled)
            self._submit(self._buffer.take())
        self._pool.shutdown(wait=True)
        if self._error is not None:
            raise self._error
        parts = [self._parts[number] for number in sorted(self._parts)]
        if len(parts) != self._next_part - 1:
            raise BackupError("the upload of %s lost parts: %d of %d stored" % (
                self._location(), len(parts), self._next_part - 1))
        self._storage.complete_multipart(self.key, self._upload_id, parts)

    def _stop_pool(self):
        """Drop queued parts and wait for the ones on the wire, so none lands after the abort."""
        if self._pool is None:
            return
        for future in self._futures:
            future.cancel()
        self._pool.shutdown(wait=True)

    def _abort_upload(self):
        problem = None
        for _attempt in range(ABORT_ATTEMPTS):
            problem = self._storage.abort_multipart(self.key, self._upload_id)
            if problem is None:
                return
        self.warnings.append(
            "the multipart upload %s of %s could not be aborted (%s); its parts stay in the bucket until "
            "removed (a lifecycle rule AbortIncompleteMultipartUpload does that)" % (
                self._upload_id, self._location(), problem)
        )


# --------------------------------------------------------------------------- storage


class S3Storage(object):
    type = "s3"
    # One boto3 client serves many threads: catalog.load_manifests reads manifests in parallel.
    concurrent_reads = True

    def __init__(self, params):
        if not HAS_BOTO3:
            raise ValidationError(
                "storage.type s3 needs the Python package boto3 on the host that runs the module "
                "(Debian/Ubuntu: apt install python3-boto3; or pip install boto3): %s" % BOTO3_IMPORT_ERROR
            )
        self.bucket = params.get("bucket")
        if not self.bucket:
            raise ValidationError("storage.bucket is required for storage.type s3")
        self.endpoint_url = params.get("endpoint_url") or None
        self.region = params.get("region") or None
        self.part_size = _check_range(params, "part_size", DEFAULT_PART_MIB, MIN_PART_MIB, MAX_PART_MIB, " MiB")
        self.max_concurrency = _check_range(params, "max_concurrency", DEFAULT_CONCURRENCY, 1, MAX_CONCURRENCY)
        self.retries = params.get("retries") if params.get("retries") is not None else 3
        self.timeout = params.get("timeout") or 60
        self.checksum = params.get("checksum") or "sha256"
        self.object_lock = _check_object_lock(params.get("object_lock"))
        self._params = params
        self._verify = _check_tls(params)
        _check_credentials(params)
        self._check_encryption_and_tags()
        self._client = None
        self._client_lock = threading.Lock()
        self._conditional = True  # cleared when the service rejects If-None-Match (see _conditional_call)
        self.delete_requests = 0  # DeleteObjects calls of delete_many (botocore's retries not counted)
        self.delete_markers = []  # keys delete_many only hid behind a delete marker (a versioned bucket)

    def _check_encryption_and_tags(self):
        params = self._params
        if params.get("kms_key_id") and params.get("sse") != "aws:kms":
            raise ValidationError("storage.kms_key_id needs storage.sse: aws:kms")
        tags = params.get("tags") or {}
        if len(tags) > MAX_TAGS:
            raise ValidationError("storage.tags: S3 allows at most %d tags per object, not %d" % (MAX_TAGS, len(tags)))

    # -- identity

    def describe(self):
        return {"type": "s3", "bucket": self.bucket, "endpoint_url": self.endpoint_url, "region": self.region}

    def location(self, key):
        return "s3://%s/%s" % (self.bucket, key)

    def endpoint_text(self):
        return self.endpoint_url or "AWS S3 (region %s)" % (self.region or "from the SDK's configuration")

    # -- client

    def client(self):
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self):
        params = self._params
        try:
            session = boto3.session.Session(
                aws_access_key_id=params.get("access_key") or None,
                aws_secret_access_key=params.get("secret_key") or None,
                aws_session_token=params.get("session_token") or None,
                profile_name=params.get("profile") or None,
                region_name=self.region,
            )
        except ProfileNotFound:
            raise ValidationError("storage.profile %s is not in the AWS config files" % params.get("profile"))
        kwargs = {"config": self._config()}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self._verify is not None:
            kwargs["verify"] = self._verify
        try:
            client = session.client("s3", **kwargs)
        except (BotoCoreError, ValueError) as exc:
            raise ValidationError("cannot set up the S3 client for %s: %s" % (self.endpoint_text(), self.scrub(exc)))
        # Last: after botocore's own handlers have settled the body.
        client.meta.events.register_last("before-call.s3.DeleteObjects", _add_content_md5)
        return client

    def _config(self):
        params = self._params
        style = params.get("addressing_style") or ("path" if self.endpoint_url else "auto")
        options = dict(
            # Config's "max_attempts" counts retries only (botocore adds the first try); "total_max_attempts"
            # is the plain count of tries: the first one plus storage.retries.
            retries={"mode": "standard", "total_max_attempts": self.retries + 1},
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            s3={"addressing_style": style},
            max_pool_connections=max(10, self.max_concurrency + 2),
            user_agent_extra="songmetrix.backup",
        )
        # botocore >= 1.36 sends CRC32 checksums on every upload unless told "when_required"; B2, R2 and
        # some MinIO versions reject them. Older botocore has neither option (and sends none).
        if "request_checksum_calculation" in Config.OPTION_DEFAULTS:
            calculation = params.get("request_checksum_calculation") or "when_required"
            options["request_checksum_calculation"] = calculation
            options["response_checksum_validation"] = calculation
        return Config(**options)

    def close(self):
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None and hasattr(client, "close"):
            client.close()

    # -- errors

    def scrub(self, text):
        """``text`` without any credential this storage knows."""
        text = str(text)
        for name in ("secret_key", "session_token", "access_key"):
            secret = self._params.get(name)
            if secret:
                text = text.replace(str(secret), "********")
        return text

    def explain(self, exc, action, key=None):
        """A BackupError that says what failed where and why, for a botocore exception."""
        where = self.location(key) if key is not None else "s3://%s" % self.bucket
        if isinstance(exc, BackupError):
            return exc
        if isinstance(exc, ClientError):
            return BackupError(self.scrub(self._client_error_text(exc, action, where)))
        return BackupError(self.scrub(self._transport_error_text(exc, action, where)))

    def _client_error_text(self, exc, action, where):
        status, code = error_code(exc)
        detail = _status_text(status, code)
        if code == "NoSuchBucket":
            return "S3 bucket %s does not exist (endpoint %s; %s)" % (self.bucket, self.endpoint_text(), detail)
        if code == "PreconditionFailed" or status == 412:
            return "%s already exists; a stored backup is never overwritten (%s)" % (where, detail)
        fields = dict(
            endpoint=self.endpoint_text(), where=where, region=self.region, retries=self.retries, detail=detail,
            message=(getattr(exc, "response", None) or {}).get("Error", {}).get("Message") or "",
        )
        return "%s %s failed: %s" % (action, where, self._client_error_cause(status, code, fields, action))

    def _client_error_cause(self, status, code, fields, action):
        for codes, text in _CLIENT_ERROR_CAUSES:
            if code in codes:
                return text.format(**fields)
        if code in _DENIED or status == 403:
            return "access denied to {where} by {endpoint} ({detail})".format(**fields) + self._denied_hint(
                action, fields["where"])
        if code in _NOT_FOUND:
            return "it does not exist ({detail})".format(**fields)
        if (status is not None and status >= 500) or code in _TRANSIENT:
            return "{endpoint} kept failing after {retries} retries ({detail}: {message})".format(**fields)
        return "{endpoint} refused it ({detail}: {message})".format(**fields)

    def _denied_hint(self, action, where):
        if action == "deleting" and self.object_lock:
            return "; the object is protected by Object Lock until its retention ends"
        if action == "checking" and where != "s3://%s" % self.bucket:
            return "; without s3:ListBucket S3 answers 403 for missing keys as well"
        return ""

    def _transport_error_text(self, exc, action, where):
        endpoint = self.endpoint_text()
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return (
                "%s %s failed: no S3 credentials found (set storage.access_key and storage.secret_key, "
                "storage.profile, or the default credential chain: environment, ~/.aws, instance role)" % (
                    action, where)
            )
        if isinstance(exc, SSLError):
            return "%s %s failed: TLS with %s failed (see storage.ca_bundle and storage.validate_certs): %s" % (
                action, where, endpoint, exc)
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError)):
            return "%s %s failed: cannot reach the S3 endpoint %s after %d retries: %s" % (
                action, where, endpoint, self.retries, exc)
        if isinstance(exc, ReadTimeoutError):
            return "%s %s failed: %s did not answer within %d s (after %d retries)" % (
                action, where, endpoint, self.timeout, self.retries)
        return "%s %s failed: %s (%s)" % (action, where, exc, type(exc).__name__)

    def _call(self, action, key, operation, **kwargs):
        """client.<operation>(**kwargs), with errors turned into BackupError."""
        try:
            return getattr(self.client(), operation)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self.explain(exc, action, key)

    # -- preflight

    def preflight(self, create):
        """head_bucket; with create=True also a write and delete of a probe object (not with Object Lock)."""
        try:
            self.client().head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            status, code = error_code(exc)
            if status == 403 and code in ("403", "Forbidden"):
                self._explain_forbidden()
            raise self._preflight_error(exc)
        except BotoCoreError as exc:
            raise self._preflight_error(exc)
        if self.object_lock:
            self._check_bucket_lock()
        elif create:
            self._probe_write()

    def _preflight_error(self, exc):
        status, code = error_code(exc)
        if code in _NOT_FOUND and status == 404:
            return ValidationError("S3 bucket %s does not exist (endpoint %s; %s)" % (
                self.bucket, self.endpoint_text(), _status_text(status, "NoSuchBucket")))
        error = self.explain(exc, "checking")
        if isinstance(exc, ClientError) and status is not None and status < 500:
            return ValidationError(str(error))
        return error

    def _explain_forbidden(self):
        """HEAD answers carry no error code: ask with a GET to tell a bad key from missing rights."""
        try:
            self.client().list_objects_v2(Bucket=self.bucket, MaxKeys=1)
        except ClientError as exc:
            if error_code(exc)[1] not in ("403", "Forbidden"):
                raise self._preflight_error(exc)
        except BotoCoreError:
            return

    def _check_bucket_lock(self):
        """Object Lock needs a bucket created with it; a probe object could not be deleted, so none is written."""
        try:
            config = self.client().get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            status, code = error_code(exc)
            if code == "ObjectLockConfigurationNotFoundError":
                raise ValidationError(
                    "storage.object_lock is set but S3 bucket %s has no Object Lock enabled (%s)" % (
                        self.bucket, _status_text(status, code)))
            if status == 403:
                return  # may not read the configuration; the first upload tells
            raise self.explain(exc, "checking Object Lock of")
        except BotoCoreError as exc:
            raise self.explain(exc, "checking Object Lock of")
        enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            raise ValidationError("storage.object_lock is set but S3 bucket %s has no Object Lock enabled" % (
                self.bucket))

    def _probe_write(self):
        prefix = (self._params.get("prefix") or "").strip("/")
        key = "%s.songmetrix-probe-%d" % (prefix + "/" if prefix else "", os.getpid())
        args = self.checksum_args(b"")
        args.update(Bucket=self.bucket, Key=key, Body=b"")
        try:
            self.client().put_object(**args)
            self.client().delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            error = self.explain(exc, "writing a probe object", key)
            if isinstance(exc, ClientError) and (error_code(exc)[0] or 500) < 500:
                raise ValidationError(str(error))
            raise error

    # -- object arguments

    def object_args(self, metadata):
        """Arguments every stored object gets: metadata, storage class, encryption, lock, tags."""
        params = self._params
        args = {"Metadata": encode_metadata(metadata)}
        if params.get("storage_class"):
            args["StorageClass"] = params["storage_class"]
        if params.get("sse"):
            args["ServerSideEncryption"] = params["sse"]
            if params.get("kms_key_id"):
                args["SSEKMSKeyId"] = params["kms_key_id"]
        if self.object_lock:
            args["ObjectLockMode"] = self.object_lock["mode"]
            args["ObjectLockRetainUntilDate"] = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
                days=self.object_lock["retain_days"])
        if params.get("tags"):
            args["Tagging"] = encode_tags(params["tags"])
        return args

    def checksum_args(self, body):
        """The integrity headers of one request body: SHA-256, or Content-MD5 where Object Lock needs one."""
        if self.checksum == "sha256":
            # ChecksumAlgorithm also sends x-amz-sdk-checksum-algorithm, which some services (and moto)
            # require with Object Lock; botocore computes nothing itself when the checksum is given.
            return {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": sha256_b64(body)}
        if self.object_lock:
            return {"ContentMD5": md5_b64(body)}
        return {}

    # -- writes

    def exists(self, key):
        try:
            self.client().head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            status, code = error_code(exc)
            if status == 404 and code != "NoSuchBucket":
                return False
            raise self.explain(exc, "checking", key)
        except BotoCoreError as exc:
            raise self.explain(exc, "checking", key)
        return True

    def open_writer(self, key, metadata=None, size_hint=None):
        if self.exists(key):
            raise BackupError("%s already exists; a stored backup is never overwritten" % self.location(key))
        return S3Writer(self, key, metadata, size_hint)

    def put_small(self, key, data, metadata=None):
        writer = self.open_writer(key, metadata)
        try:
            writer.write(data)
            writer.commit()
        except BaseException:
            writer.abort()
            raise

    def create_small(self, key, data):
        """A status object that must not exist yet (a lock): PutObject with If-None-Match: *."""
        self.put_object(key, data, self._status_object_args(), replace=False)

    def replace_small(self, key, data):
        """A status object, replacing any old one: a plain PutObject (no If-None-Match)."""
        self.put_object(key, data, self._status_object_args(), replace=True)

    def _status_object_args(self):
        args = self.object_args(None)
        # Not locked: a status object is no backup, it must be replaceable and removable.
        args.pop("ObjectLockMode", None)
        args.pop("ObjectLockRetainUntilDate", None)
        return args

    def put_object(self, key, body, object_args, replace=False):
        args = dict(object_args)
        args.update(self.checksum_args(body))
        args.update(Bucket=self.bucket, Key=key, Body=bytes(body))
        if replace:
            self._call("storing", key, "put_object", **args)
        else:
            self._conditional_call("storing", key, "put_object", args)

    def create_multipart(self, key, object_args):
        args = dict(object_args, Bucket=self.bucket, Key=key)
        if self.checksum == "sha256":
            args["ChecksumAlgorithm"] = "SHA256"
        return self._call("starting the upload of", key, "create_multipart_upload", **args)["UploadId"]

    def upload_part(self, key, upload_id, number, body):
        """Send one part (retried by botocore on transient errors); returns (ETag, checksum or None)."""
        checksum = self.checksum_args(body)
        response = self._call(
            "uploading part %d of" % number, key, "upload_part",
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body, **checksum
        )
        return response["ETag"], checksum.get("ChecksumSHA256")

    def complete_multipart(self, key, upload_id, parts):
        args = dict(Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
        self._conditional_call("completing the upload of", key, "complete_multipart_upload", args)

    def abort_multipart(self, key, upload_id):
        """Abort a multipart upload; returns None when done (or already gone), else the problem as text."""
        try:
            self.client().abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if error_code(exc)[1] == "NoSuchUpload":
                return None
            return str(self.explain(exc, "aborting the upload of", key))
        except BotoCoreError as exc:
            return str(self.explain(exc, "aborting the upload of", key))
        return None

    def _conditional_call(self, action, key, operation, args):
        """A write with If-None-Match: * so that S3 itself refuses to replace an existing object.

        exists() was checked before the upload started; the condition closes the gap between that
        check and the commit. A service that does not implement conditional writes (501
        NotImplemented) gets the call again without it, and is not asked again.
        """
        if self._conditional and self._supports("IfNoneMatch", operation):
            try:
                return getattr(self.client(), operation)(IfNoneMatch="*", **args)
            except ClientError as exc:
                status, code = error_code(exc)
                if not (status == 501 or code == "NotImplemented"):
                    raise self.explain(exc, action, key)
                self._conditional = False
            except BotoCoreError as exc:
                raise self.explain(exc, action, key)
        return self._call(action, key, operation, **args)

    def _supports(self, member, operation):
        meta = self.client().meta
        model = meta.service_model.operation_model(meta.method_to_api_mapping[operation])
        return member in model.input_shape.members

    # -- reads

    def open_reader(self, key):
        response = self._call("reading", key, "get_object", Bucket=self.bucket, Key=key)
        return S3Reader(self, key, response)

    def get_small(self, key):
        return read_whole(self.open_reader(key))

    def list_keys(self, prefix=""):
        """Every object whose key starts with ``prefix`` (a raw key prefix, like the local storage)."""
        paginator = self.client().get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix or "")
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    if item["Key"].endswith("/"):
                        continue  # a "folder" marker some tools create, not an object of ours
                    modified = item.get("LastModified")
                    yield ObjectInfo(item["Key"], item.get("Size", 0), modified.timestamp() if modified else None)
        except (BotoCoreError, ClientError) as exc:
            raise self.explain(exc, "listing", prefix)

    def delete(self, key):
        self._call("deleting", key, "delete_object", Bucket=self.bucket, Key=key)

    def delete_many(self, keys):
        """DeleteObjects with up to DELETE_BATCH keys each, one request after another in list order.

        Without version ids, a versioned bucket (every Object Lock bucket is one) removes nothing: it
        puts a delete marker on top of each object, whose data stays as a noncurrent version. The
        answers are read in full (not Quiet) to tell: such keys are added to ``delete_markers``.
        """
        keys = list(keys)
        failures = []
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start:start + DELETE_BATCH]
            args = dict(Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": False})
            if self.checksum == "sha256":
                args["ChecksumAlgorithm"] = "SHA256"  # what the uploads send; botocore's default is CRC32
            self.delete_requests += 1
            try:
                response = self.client().delete_objects(**args)
            except (BotoCoreError, ClientError) as exc:
                raise StorageError("%s; %d of %d keys were deleted before" % (
                    self.explain(exc, "deleting %d objects from" % len(batch)), start - len(failures), len(keys)),
                    failures=failures)
            for error in response.get("Errors", ()):
                failures.append((error.get("Key"), "%s: %s" % (error.get("Code"), error.get("Message"))))
            self.delete_markers.extend(item.get("Key") for item in response.get("Deleted", ())
                                       if item.get("DeleteMarker"))
        return failures

    def versioning(self):
        """The bucket's versioning: "enabled", "suspended", "disabled", or "unknown".

        "unknown" where the service refuses to say (no s3:GetBucketVersioning, or not implemented:
        "disabled" is not assumed, a plan must not promise freed bytes it cannot know of).
        """
        try:
            status = self.client().get_bucket_versioning(Bucket=self.bucket).get("Status")
        except ClientError as exc:
            if error_code(exc)[1] != "NoSuchBucket":
                return "unknown"
            raise self.explain(exc, "reading the versioning state of")
        except BotoCoreError as exc:
            raise self.explain(exc, "reading the versioning state of")
        return {"Enabled": "enabled", "Suspended": "suspended"}.get(status, "disabled")
