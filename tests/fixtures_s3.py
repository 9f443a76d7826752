"""pytest fixtures for S3 storage tests (registered by tests/conftest.py through pytest_plugins).

    def test_x(s3_server, s3_bucket, s3_proxy, s3_storage_params, run_module): ...

s3_server    session-wide S3Server (tests/s3server.py): moto over HTTP on 127.0.0.1, IAM auth on;
             endpoint_url, access_key, secret_key, region, client(), create_bucket(name=None,
             object_lock=False), create_credentials(actions), pending_uploads(bucket), keys(bucket),
             delete_bucket(name), stop()/start() (same port, data kept). Tests that stop() it
             must start() it again before they end.
s3_bucket    a fresh, empty bucket on s3_server (emptied and removed afterwards); the value is its name
s3_proxy     a fresh FaultProxy in front of s3_server: fail(), kill_after(), count(), endpoint_url
s3_storage_params(bucket, endpoint_url=None, **extra)
             the `storage` dict of a module call: type s3, bucket, endpoint_url (s3_server's unless
             given), access_key, secret_key, region, prefix ""; ``extra`` adds or overrides options

A real S3 server beside the mock (tests/seaweedfs.py), started once per session when a test asks:

seaweedfs_server    session-wide SeaweedFSServer: the same helpers as s3_server, create_bucket(name=None,
                    object_lock=False, versioning=False); stop()/start() keep the data (a restart waits
                    until GETs answer); no create_credentials()
seaweedfs_bucket    a fresh, empty, unversioned bucket on seaweedfs_server (removed afterwards)
seaweedfs_storage_params(bucket, endpoint_url=None, **extra)
                    like s3_storage_params, for seaweedfs_server
"""

from __future__ import annotations


import pytest

from tests.s3server import FaultProxy, S3Server
from tests.seaweedfs import SeaweedFSServer
from tests.servers import ServerUnavailable, missing_server


@pytest.fixture(scope="session")
def s3_server():
    try:
        server = S3Server()
    except ServerUnavailable as exc:
        missing_server(exc)
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def s3_bucket(s3_server):
    name = s3_server.create_bucket()
    yield name
    if s3_server.running:
        s3_server.delete_bucket(name)


@pytest.fixture
def s3_proxy(s3_server):
    proxy = FaultProxy(s3_server.endpoint_url)
    yield proxy
    proxy.stop()


def storage_params_builder(server):
    """build(bucket, endpoint_url=None, **extra): the `storage` dict of a module call on ``server``."""
    def build(bucket, endpoint_url=None, **extra):
        params = dict(
            type="s3",
            bucket=bucket,
            endpoint_url=endpoint_url or server.endpoint_url,
            access_key=server.access_key,
            secret_key=server.secret_key,
            region=server.region,
            prefix="",
        )
        params.update(extra)
        return params

    return build


@pytest.fixture(scope="session")
def s3_storage_params(s3_server):
    return storage_params_builder(s3_server)


@pytest.fixture(scope="session")
def seaweedfs_server():
    try:
        server = SeaweedFSServer()
    except ServerUnavailable as exc:
        missing_server(exc)
    try:
        server.start()
    except BaseException:
        server.cleanup()
        raise
    yield server
    server.cleanup()


@pytest.fixture
def seaweedfs_bucket(seaweedfs_server):
    name = seaweedfs_server.create_bucket()
    yield name
    if seaweedfs_server.running:
        seaweedfs_server.delete_bucket(name)


@pytest.fixture(scope="session")
def seaweedfs_storage_params(seaweedfs_server):
    return storage_params_builder(seaweedfs_server)
