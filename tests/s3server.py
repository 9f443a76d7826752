"""A real S3 endpoint for the tests (moto's server on 127.0.0.1) and a fault-injecting proxy in front of it.

    with S3Server() as s3:
        bucket = s3.create_bucket()
        s3.client().list_objects_v2(Bucket=bucket)

    proxy = FaultProxy(s3.endpoint_url)
    proxy.fail("UploadPart", status=503, times=2, part_numbers=[2])   # part 2 fails twice, then passes
    proxy.kill_after("UploadPart", 3)      # the 4th part kills the endpoint: connection dropped, port closed
    proxy.delay("UploadPart", 0.2)         # slow parts down (to see how many are in flight)
    proxy.count("UploadPart", status=503)  # what the proxy saw; proxy.requests has every request

S3Server runs moto's ThreadedMotoServer in this process, over real HTTP. It turns on moto's IAM
authentication with a generated access key (so a wrong key or secret is refused as by AWS) and
can make more users with narrower policies. moto keeps its data in this process, so stop() and
start() (same port) keep every bucket and object: a restarted endpoint, not a new one.
"""

from __future__ import annotations

import collections
import http.client
import json
import logging
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import boto3
import requests
from botocore.config import Config

from tests.servers import LOCALHOST, ServerError, ServerUnavailable, free_port

try:
    from moto.server import ThreadedMotoServer
except ImportError as exc:  # moto[server] comes with requirements-dev.txt
    ThreadedMotoServer = None
    MOTO_IMPORT_ERROR = str(exc)

__all__ = ["FaultProxy", "S3Server", "classify"]

REGION = "us-east-1"
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def client_config(**extra) -> Config:
    """What a careful independent client uses against moto: path style, no default CRC checksums."""
    options = dict(
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": 3},
    )
    options.update(extra)
    return Config(**options)


def _with_moto_aliases(actions) -> list[str]:
    """AWS authorizes HeadObject by s3:GetObject; moto >= 5.2 asks for an action s3:HeadObject of its own.
    Grant (or deny) both, so a policy means here what it means on AWS."""
    actions = list(actions)
    if "s3:GetObject" in actions and "s3:HeadObject" not in actions:
        actions.append("s3:HeadObject")
    return actions


class S3Server:
    """moto's S3 (and IAM) over HTTP on 127.0.0.1:<free port>, with authentication on."""

    def __init__(self, port: int | None = None, region: str = REGION):
        if ThreadedMotoServer is None:
            raise ServerUnavailable(f"moto[server] is not installed ({MOTO_IMPORT_ERROR}); run `make deps`")
        self.port = port or free_port()
        self.region = region
        self.endpoint_url = f"http://{LOCALHOST}:{self.port}"
        self.access_key = None
        self.secret_key = None
        self._moto = None

    # -- life cycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.cleanup()

    @property
    def running(self) -> bool:
        return self._moto is not None

    def start(self):
        """Start (or restart, on the same port) the endpoint; the first start creates the credentials."""
        if self._moto is not None:
            return
        # werkzeug logs every request at INFO on stderr; keep test output for failures.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._moto = ThreadedMotoServer(ip_address=LOCALHOST, port=self.port, verbose=False)
        try:
            self._moto.start()
        except OSError as exc:
            self._moto = None
            raise ServerError(f"moto could not listen on {self.endpoint_url}: {exc}") from exc
        if self.access_key is None:
            self.access_key, self.secret_key = self._enable_authentication()

    def stop(self):
        """Stop serving and close the port (moto's own stop() leaves the socket bound)."""
        if self._moto is None:
            return
        moto, self._moto = self._moto, None
        moto.stop()
        server = getattr(moto, "_server", None)
        if server is not None:
            server.server_close()

    def cleanup(self):
        self.stop()

    def _enable_authentication(self):
        """An admin user with a generated key pair, then moto checks every request's signature.

        moto's state (and this switch) is per process: another S3Server in the same process shares
        users and buckets, so authentication is lifted while the user is made.
        """
        self._set_auth("inf")
        iam = boto3.client(
            "iam", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
        )
        keys = self._make_user(iam, "admin-" + secrets.token_hex(4), ADMIN_POLICY)
        self._set_auth("0")
        return keys

    def _set_auth(self, unauthenticated_requests):
        """moto checks signatures after this many more requests ("inf": never)."""
        response = requests.post(f"{self.endpoint_url}/moto-api/reset-auth", data=unauthenticated_requests,
                                 timeout=30)
        response.raise_for_status()

    @staticmethod
    def _make_user(iam, name, policy):
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def create_credentials(self, actions, resource="*", deny=()) -> tuple[str, str]:
        """A new user allowed only ``actions`` (e.g. ["s3:GetObject"]); returns (access_key, secret_key)."""
        statements = [{"Effect": "Allow", "Action": _with_moto_aliases(actions), "Resource": resource}]
        if deny:
            statements.append({"Effect": "Deny", "Action": _with_moto_aliases(deny), "Resource": resource})
        iam = self.client("iam")
        return self._make_user(iam, "user-" + secrets.token_hex(4), {"Version": "2012-10-17", "Statement": statements})

    # -- clients and buckets

    def client(self, service: str = "s3", endpoint_url: str | None = None, **config):
        """A plain boto3 client of its own (not the code under test), with the admin keys."""
        return boto3.client(
            service,
            endpoint_url=endpoint_url or self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=client_config(**config),
        )

    def create_bucket(self, name: str | None = None, object_lock: bool = False) -> str:
        name = name or "bucket-" + secrets.token_hex(6)
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name

    def pending_uploads(self, bucket: str) -> list[dict]:
        """Multipart uploads started and neither completed nor aborted."""
        return self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return [item["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                for item in page.get("Contents", [])]

    def stranded_lock(self, bucket: str, job: str, prefix: str = "") -> dict:
        """The job's lock object (<prefix>/<job>/lock.json) as a dict; {} when there is none.

        A run whose endpoint died cannot remove its lock: it stays, naming the host and pid."""
        key = "/".join(part for part in (prefix, job, "lock.json") if part)
        try:
            body = self.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.client().exceptions.NoSuchKey:
            return {}
        return json.loads(body)

    def delete_bucket(self, name: str):
        """Empty and remove a bucket (best effort for locked objects): keeps moto's memory small."""
        s3 = self.client()
        for upload in self.pending_uploads(name):
            s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        paginator = s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=name):
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                try:
                    s3.delete_object(Bucket=name, Key=item["Key"], VersionId=item["VersionId"],
                                     BypassGovernanceRetention=True)
                except s3.exceptions.ClientError:
                    pass  # COMPLIANCE-locked: stays until the session ends
        try:
            s3.delete_bucket(Bucket=name)
        except s3.exceptions.ClientError:
            pass


# --------------------------------------------------------------------------- fault proxy


def classify(method: str, target: str, headers=None) -> tuple[str, int | None]:
    """The S3 operation of a path-style request, and its part number for UploadPart."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    path = parts.path.lstrip("/")
    if path.startswith("moto-api"):
        return "MotoApi", None
    has_key = "/" in path and path.split("/", 1)[1] != ""
    if "uploadId" in query:
        if method == "PUT" and "partNumber" in query:
            return "UploadPart", int(query["partNumber"][0])
        return {"POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload", "GET": "ListParts"}.get(
            method, method), None
    if "uploads" in query:
        return ("CreateMultipartUpload" if method == "POST" else "ListMultipartUploads"), None
    if not has_key:
        return _bucket_operation(method, query), None
    return _object_operation(method, query, headers or {}), None


def _bucket_operation(method, query):
    if method == "GET":
        for name, operation in (("object-lock", "GetObjectLockConfiguration"), ("location", "GetBucketLocation"),
                                ("versions", "ListObjectVersions")):
            if name in query:
                return operation
        return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, method)


def _object_operation(method, query, headers):
    if "tagging" in query:
        return {"GET": "GetObjectTagging", "PUT": "PutObjectTagging"}.get(method, method)
    if method == "PUT":
        return "CopyObject" if headers.get("x-amz-copy-source") else "PutObject"
    return {"HEAD": "HeadObject", "GET": "GetObject", "DELETE": "DeleteObject"}.get(method, method)


@dataclass
class SeenRequest:
    operation: str
    part_number: int | None
    status: int | None  # None: the connection was dropped
    injected: bool
    arrival: int  # order in which requests arrived (the list is in order of completion)
    size: int  # request body bytes
    headers: dict  # request headers, names in lower case


@dataclass
class _Rule:
    operation: str
    status: int
    code: str
    times: int | None
    part_numbers: frozenset | None
    used: collections.Counter

    def take(self, operation, part_number):
        if operation != self.operation:
            return False
        if self.part_numbers is not None and part_number not in self.part_numbers:
            return False
        slot = part_number if self.part_numbers is not None else None
        if self.times is not None and self.used[slot] >= self.times:
            return False
        self.used[slot] += 1
        return True


DEFAULT_CODES = {403: "AccessDenied", 404: "NoSuchKey", 500: "InternalError", 503: "ServiceUnavailable"}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "expect"}


class FaultProxy:
    """An HTTP proxy on 127.0.0.1:<free port> that forwards to ``upstream_url`` unless told to fail."""

    def __init__(self, upstream_url: str):
        upstream = urlsplit(upstream_url)
        self.upstream = (upstream.hostname, upstream.port or 80)
        self.requests: list[SeenRequest] = []
        self.dead = False
        self._rules: list[_Rule] = []
        self._kill: tuple[str, int] | None = None
        self._delays: dict[str, float] = {}
        self._arrivals = 0
        self._in_flight = collections.Counter()
        self._forwarded = collections.Counter()
        self.max_in_flight = collections.Counter()  # per operation, the most requests handled at once
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server = _ProxyServer((LOCALHOST, 0), _ProxyHandler, self)
        self.port = self._server.server_address[1]
        self.endpoint_url = f"http://{LOCALHOST}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    # -- what to do

    def fail(self, operation: str, status: int = 503, times: int | None = 1, part_numbers=None, code=None):
        """Answer ``status`` (an S3 error document) to the first ``times`` matching requests (None: all).

        With ``part_numbers`` only UploadPart requests of those parts match, and each part fails
        ``times`` times.
        """
        rule = _Rule(operation, status, code or DEFAULT_CODES.get(status, "InternalError"), times,
                     frozenset(part_numbers) if part_numbers is not None else None, collections.Counter())
        with self._lock:
            self._rules.append(rule)
        return rule

    def kill_after(self, operation: str, count: int):
        """Forward ``count`` matching requests; the next one kills the endpoint (no answer, port closed)."""
        with self._lock:
            self._kill = (operation, count)

    def delay(self, operation: str, seconds: float):
        """Hold every matching request this long before forwarding it."""
        with self._lock:
            self._delays[operation] = seconds

    def clear(self):
        with self._lock:
            self._rules = []
            self._kill = None
            self._delays = {}

    # -- what happened

    def count(self, operation: str | None = None, status: int | None = None, injected: bool | None = None) -> int:
        with self._lock:
            seen = list(self.requests)
        return sum(1 for r in seen if (operation is None or r.operation == operation)
                   and (status is None or r.status == status) and (injected is None or r.injected == injected))

    def counts(self) -> collections.Counter:
        with self._lock:
            return collections.Counter(r.operation for r in self.requests)

    def stop(self):
        if not self.dead:
            self._die()
        self._thread.join(timeout=10)

    # -- the handler's side

    def arrive(self, operation, part_number, size, headers):
        """Note a request as it arrives; returns (its SeenRequest, seconds to hold it).

        The handler fills in the status before it answers, so a client that has its answer finds
        its request in ``requests`` already.
        """
        with self._lock:
            self._arrivals += 1
            self._in_flight[operation] += 1
            self.max_in_flight[operation] = max(self.max_in_flight[operation], self._in_flight[operation])
            seen = SeenRequest(operation, part_number, None, True, self._arrivals, size, headers)
            self.requests.append(seen)
            return seen, self._delays.get(operation, 0)

    def decide(self, operation, part_number):
        """None (forward), "kill", or (status, code)."""
        with self._lock:
            if self.dead:
                return "kill"
            if self._kill is not None and operation == self._kill[0] and self._forwarded[operation] >= self._kill[1]:
                return "kill"
            for rule in self._rules:
                if rule.take(operation, part_number):
                    return rule.status, rule.code
            self._forwarded[operation] += 1
        return None

    def done(self, seen: SeenRequest):
        with self._lock:
            self._in_flight[seen.operation] -= 1

    def track(self, connection, active):
        with self._lock:
            if active:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _die(self):
        """The endpoint is gone: stop listening and reset every open connection."""
        with self._lock:
            self.dead = True
            connections = list(self._connections)
        threading.Thread(target=self._close_listener, daemon=True).start()
        for connection in connections:
            _reset(connection)

    def _close_listener(self):
        self._server.shutdown()
        self._server.server_close()


def _reset(connection):
    """Close with RST (SO_LINGER 0), as a crashed server's kernel would."""
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
    except OSError:
        pass


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address, handler, proxy):
        self.proxy = proxy
        super().__init__(address, handler)

    def handle_error(self, request, client_address):
        pass  # connections the proxy reset on purpose end in errors here; nothing to report


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.server.proxy.track(self.connection, True)

    def finish(self):
        self.server.proxy.track(self.connection, False)
        try:
            super().finish()
        except (OSError, ValueError):
            pass  # reset by _die()

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def _handle(self):
        proxy = self.server.proxy
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        operation, part_number = classify(self.command, self.path, headers)
        seen, hold = proxy.arrive(operation, part_number, len(body), headers)
        try:
            if hold:
                time.sleep(hold)
            self._answer(proxy, seen, body)
        finally:
            proxy.done(seen)

    def _answer(self, proxy, seen, body):
        decision = proxy.decide(seen.operation, seen.part_number)
        if decision == "kill":
            self.close_connection = True
            _reset(self.connection)
            proxy._die()
        elif decision is not None:
            self._send_error(seen, *decision)
        else:
            seen.injected = False
            try:
                self._forward(seen, body)
            except OSError:
                # The upstream is down (S3Server.stop()): answer as a load balancer in front of it would.
                self._send_error(seen, 502, "BadGateway")

    def _send_error(self, seen, status, code):
        payload = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>injected by FaultProxy'
            "</Message><RequestId>%s</RequestId></Error>" % (code, secrets.token_hex(8))
        ).encode()
        seen.status = status
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _forward(self, seen, body):
        upstream = http.client.HTTPConnection(*self.server.proxy.upstream, timeout=120)
        try:
            # The Host header is signed by the client: pass it on unchanged.
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    upstream.putheader(name, value)
            upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body)
            response = upstream.getresponse()
            payload = response.read()
            seen.status = response.status
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP and not (name.lower() == "content-length" and self.command != "HEAD"):
                    self.send_header(name, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        finally:
            upstream.close()
