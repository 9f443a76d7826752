"""Opt-in: the mongodb engine against a real MongoDB server given by environment variables.

    SONGMETRIX_MONGODB_URI=mongodb://user:password@host:27017/?authSource=admin   (required)
    SONGMETRIX_MONGODB_DATABASE=catalog   (without pymongo: an existing database to dump, read only)
    .venv/bin/python -m pytest tests/optin/test_mongodb_real.py

Needs mongodump and mongorestore (MongoDB Database Tools >= 100.3.0) on PATH. With pymongo
installed, the test seeds a database songmetrix_optin_<random>, dumps it, restores it into
songmetrix_optin_<random>_copy, compares every collection's documents and drops both.
Without SONGMETRIX_MONGODB_URI every test here is skipped.
"""

import json
import os
import shutil
import uuid

import pytest

from tests.modrun import run_module

URI = os.environ.get("SONGMETRIX_MONGODB_URI")
if not URI:
    pytest.skip("opt-in suite: set SONGMETRIX_MONGODB_URI (e.g. mongodb://user:pw@host:27017/?authSource=admin) to "
                "run the mongodb engine against a real server", allow_module_level=True)
if not (shutil.which("mongodump") and shutil.which("mongorestore")):
    pytest.skip("mongodump and mongorestore (MongoDB Database Tools) are not on PATH", allow_module_level=True)

try:
    import pymongo
except ImportError:
    pymongo = None


def secret_parts():
    userinfo = URI.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
    return [part for part in (URI, userinfo.partition(":")[2]) if len(part) >= 3]


def assert_no_secret(result):
    text = json.dumps(result)
    for secret in secret_parts():
        assert secret not in text


@pytest.fixture
def seeded():
    if pymongo is None:
        pytest.skip("pymongo is not installed: cannot seed and drop a test database")
    client = pymongo.MongoClient(URI)
    name = "songmetrix_optin_" + uuid.uuid4().hex[:8]
    db = client[name]
    db.items.insert_many([{"_id": i, "name": "item %d" % i, "tags": ["a", "b"][: i % 3]} for i in range(250)])
    db.users.insert_many([{"_id": "u%d" % i, "n": i} for i in range(7)])
    db.create_collection("empty")
    yield client, name
    client.drop_database(name)
    client.drop_database(name + "_copy")
    client.close()


def test_round_trip(seeded, tmp_path):
    client, name = seeded
    storage = dict(path=str(tmp_path / "store"))
    res = run_module("dump", dict(job="mongo-optin", source=dict(engine="mongodb", database=name,
                                                                 mongodb=dict(uri=URI)), storage=storage))
    assert not res.failed, res.describe()
    manifest = res.result["manifest"]
    assert manifest["server_version"] == client.server_info()["version"]
    assert manifest["table_counts"] == {"%s.items" % name: 250, "%s.users" % name: 7, "%s.empty" % name: 0}
    assert_no_secret(res.result)

    target = dict(engine="mongodb", database=name + "_copy", mongodb=dict(uri=URI))
    restored = run_module("restore", dict(manifest_key=res.result["manifest_key"], storage=storage, target=target))
    assert not restored.failed, restored.describe()
    assert_no_secret(restored.result)
    copy = client[name + "_copy"]
    for coll in ("items", "users", "empty"):
        assert list(copy[coll].find().sort("_id")) == list(client[name][coll].find().sort("_id"))

    again = run_module("restore", dict(manifest_key=res.result["manifest_key"], storage=storage, target=target))
    assert again.failed and "is not empty" in again.msg
    cleaned = run_module("restore", dict(manifest_key=res.result["manifest_key"], storage=storage, target=target,
                                         clean=True))
    assert not cleaned.failed, cleaned.describe()
    assert copy.items.count_documents({}) == 250


def test_dump_existing_database(tmp_path):
    database = os.environ.get("SONGMETRIX_MONGODB_DATABASE")
    if not database:
        pytest.skip("set SONGMETRIX_MONGODB_DATABASE to dump an existing database (read only)")
    res = run_module("dump", dict(job="mongo-optin", source=dict(engine="mongodb", database=database,
                                                                 mongodb=dict(uri=URI)),
                                  storage=dict(path=str(tmp_path / "store"))))
    assert not res.failed, res.describe()
    assert res.result["manifest"]["server_version"]
    assert res.result["manifest"]["table_counts"] is not None
    assert_no_secret(res.result)


def test_wrong_password_fails_with_the_servers_message(tmp_path):
    scheme, rest = URI.split("://", 1)
    hosts = rest.split("/", 1)[0].rpartition("@")[2]
    bad = "%s://songmetrix-nobody:wrong-password@%s/%s" % (scheme, hosts, rest.split("/", 1)[1] if "/" in rest else "")
    res = run_module("dump", dict(job="mongo-optin", source=dict(engine="mongodb", database="admin",
                                                                 mongodb=dict(uri=bad)),
                                  storage=dict(path=str(tmp_path / "store"))))
    assert res.failed and "Authentication failed" in res.msg, res.describe()
    assert "wrong-password" not in json.dumps(res.result)
