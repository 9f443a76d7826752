"""engine supabase, storage_buckets: Supabase Storage objects (a moto S3 endpoint stands in for Storage's
S3-compatible endpoint) copied into the backup beside the database dump, verified and pruned with it."""

import hashlib
import json
import os
import uuid

import pytest

from engine_helpers import stored_files

OBJECTS = {
    "face.png": b"\x89PNG" + os.urandom(3000),
    "users/u1/avatar.jpg": os.urandom(70000),
    "users/u1/deep/er/notes.txt": "ünïcødé notes\n".encode("utf-8") * 50,
    "empty.bin": b"",
    "odd/100%.txt": b"percent",
    "odd//double-slash.txt": b"double",
}


@pytest.fixture
def database(pg_server):
    name = "supa_st_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    pg_server.psql("CREATE SCHEMA auth; CREATE TABLE auth.users (id int PRIMARY KEY); "
                   "CREATE TABLE public.notes (id int PRIMARY KEY, body text); "
                   "INSERT INTO public.notes VALUES (1, 'x');",
                   dbname=name)
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def storage_buckets(s3_server):
    """Two 'Supabase Storage' buckets filled with OBJECTS (and one small one); their names."""
    client = s3_server.client()
    names = [s3_server.create_bucket(), s3_server.create_bucket()]
    for key, body in OBJECTS.items():
        client.put_object(Bucket=names[0], Key=key, Body=body, ContentType="application/x-test")
    client.put_object(Bucket=names[1], Key="only.txt", Body=b"only")
    yield names
    for name in names:
        s3_server.delete_bucket(name)


def source(pg, database, s3_server, buckets, **extra):
    supabase = dict(roles=False, managed_schemas=False, managed_data=False, storage_buckets=buckets,
                    storage_endpoint=s3_server.endpoint_url, storage_region=s3_server.region,
                    storage_access_key=s3_server.access_key, storage_secret_key=s3_server.secret_key)
    supabase.update(extra)
    return dict(engine="supabase", host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                database=database, ssl_mode="disable", supabase=supabase)


def objects_of(record):
    return [item for item in record["attachments"] if item["role"] == "storage-object"]


def test_buckets_copied_beside_the_backup_verified_and_pruned(pg_server, database, s3_server, storage_buckets,
                                                              run_module, tmp_path):
    root = str(tmp_path / "store")
    args = dict(job="supa-files", source=source(pg_server, database, s3_server, storage_buckets),
                storage=dict(path=root))
    res = run_module("dump", args)
    assert res.rc == 0, res.describe()
    record = res.result["manifest"]
    stem = res.result["manifest_key"][: -len(".manifest.json")]
    items = objects_of(record)
    assert sorted((i["bucket"], i["object_key"]) for i in items) == sorted(
        [(storage_buckets[0], key) for key in OBJECTS] + [(storage_buckets[1], "only.txt")])
    first = storage_buckets[0]
    for item in items:
        body = OBJECTS.get(item["object_key"], b"only")
        assert item["sha256"] == hashlib.sha256(body).hexdigest(), item
        assert item["size"] == item["raw_size"] == len(body)
        with open(os.path.join(root, item["key"]), "rb") as handle:
            assert handle.read() == body
    by_key = dict(((i["bucket"], i["object_key"]), i) for i in items)
    assert by_key[(first, "users/u1/deep/er/notes.txt")]["key"] == "%s.storage/%s/users/u1/deep/er/notes.txt" % (
        stem, first)
    assert by_key[(first, "users/u1/avatar.jpg")]["content_type"] == "application/x-test"
    assert by_key[(first, "empty.bin")]["size"] == 0
    assert by_key[(first, "odd/100%.txt")]["key"].endswith("/odd/100%25.txt")
    assert by_key[(first, "odd//double-slash.txt")]["key"].endswith("/odd/%00/double-slash.txt")

    info = run_module("backup_info", dict(job="supa-files", storage=dict(path=root)))
    assert info.rc == 0, info.describe()
    assert not info.result.get("incomplete"), info.describe()

    ok = run_module("verify", dict(manifest_key=res.result["manifest_key"], storage=dict(path=root)))
    assert ok.rc == 0, ok.describe()

    # One flipped byte in one object: verify names that object.
    victim = by_key[(first, "users/u1/avatar.jpg")]["key"]
    with open(os.path.join(root, victim), "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0x40]))
    bad = run_module("verify", dict(manifest_key=res.result["manifest_key"], storage=dict(path=root)))
    assert bad.rc == 1
    assert "attachment %s has SHA-256" % victim in bad.result["msg"]

    # A newer backup; prune keeps it and deletes the old one with every object of it, folders included.
    import time

    time.sleep(1.1)
    newer = run_module("dump", args)
    assert newer.rc == 0, newer.describe()
    pruned = run_module("prune", dict(job="supa-files", storage=dict(path=root), retention=dict(keep_last=1),
                                      max_delete_fraction=1.0))
    assert pruned.rc == 0, pruned.describe()
    assert [d["manifest_key"] for d in pruned.result["deleted"]] == [res.result["manifest_key"]]
    left = stored_files(root)
    assert not any(name.startswith(stem) for name in left), left
    assert not os.path.exists(os.path.join(root, stem + ".storage"))
    assert len([n for n in left if ".storage/" in n]) == len(items)


def test_all_buckets_into_s3_storage(pg_server, database, s3_server, storage_buckets, s3_bucket, s3_storage_params,
                                     run_module):
    res = run_module("dump", dict(job="supa-s3", source=source(pg_server, database, s3_server, ["all"]),
                                  storage=s3_storage_params(s3_bucket)))
    assert res.rc == 0, res.describe()
    items = objects_of(res.result["manifest"])
    buckets = set(item["bucket"] for item in items)
    assert set(storage_buckets) <= buckets
    client = s3_server.client()
    for item in items:
        if item["bucket"] in storage_buckets:
            body = client.get_object(Bucket=s3_bucket, Key=item["key"])["Body"].read()
            assert hashlib.sha256(body).hexdigest() == item["sha256"]
    ok = run_module("verify", dict(manifest_key=res.result["manifest_key"], storage=s3_storage_params(s3_bucket)))
    assert ok.rc == 0, ok.describe()


def test_object_and_folder_of_the_same_name_refused_on_local_storage(pg_server, database, s3_server, run_module,
                                                                     tmp_path):
    bucket = s3_server.create_bucket()
    try:
        client = s3_server.client()
        client.put_object(Bucket=bucket, Key="report", Body=b"file")
        client.put_object(Bucket=bucket, Key="report/2026.pdf", Body=b"inside")
        root = str(tmp_path / "store")
        res = run_module("dump", dict(job="supa-clash", source=source(pg_server, database, s3_server, [bucket]),
                                      storage=dict(path=root)))
        assert res.rc == 1
        assert "also folders of other objects" in res.result["msg"]
        assert [n for n in stored_files(root) if "last-attempt" not in n] == []
    finally:
        s3_server.delete_bucket(bucket)


def test_missing_bucket_and_bad_keys_fail_before_anything_is_written(pg_server, database, s3_server,
                                                                      storage_buckets, run_module, tmp_path):
    root = tmp_path / "store"
    res = run_module("dump", dict(job="supa-nob", source=source(pg_server, database, s3_server,
                                                                 ["no-such-bucket-" + uuid.uuid4().hex[:6]]),
                                  storage=dict(path=str(root))))
    assert res.rc == 1
    assert "does not exist" in res.result["msg"] and "Supabase Storage bucket" in res.result["msg"]
    assert not root.exists()
    res = run_module("dump", dict(job="supa-badkey", source=source(pg_server, database, s3_server, storage_buckets,
                                                                    storage_secret_key="wrong-secret-key-123"),
                                  storage=dict(path=str(root))))
    assert res.rc == 1
    assert "wrong-secret-key-123" not in json.dumps(res.result)
    assert not root.exists()


def test_check_mode_reads_buckets_and_writes_nothing(pg_server, database, s3_server, storage_buckets, run_module,
                                                     tmp_path):
    root = tmp_path / "store"
    res = run_module("dump", dict(job="supa-check", source=source(pg_server, database, s3_server, storage_buckets),
                                  storage=dict(path=str(root))), check_mode=True)
    assert res.rc == 0, res.describe()
    assert not root.exists()


def test_encrypted_job_encrypts_attachments_and_objects(pg_server, database, s3_server, storage_buckets, run_module,
                                                        tmp_path):
    import subprocess

    identity = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    public = [line.split(": ")[1] for line in identity.read_text().splitlines() if "public key" in line][0]
    root = str(tmp_path / "store")
    res = run_module("dump", dict(job="supa-age", storage=dict(path=root), encryption=dict(method="age",
                                                                                           recipients=[public]),
                                  source=source(pg_server, database, s3_server, storage_buckets[1:],
                                                roles=True, managed_schemas=True)))
    assert res.rc == 0, res.describe()
    items = res.result["manifest"]["attachments"]
    assert sorted(i["role"] for i in items) == ["managed-schema", "roles", "storage-object"]
    for item in items:
        suffix = ".age" if item["role"] == "storage-object" else ".sql.zst.age"
        assert item["key"].endswith(suffix), item
        with open(os.path.join(root, item["key"]), "rb") as handle:
            assert handle.read(21) == b"age-encryption.org/v1"
    obj = [i for i in items if i["role"] == "storage-object"][0]
    plain = subprocess.run(["age", "-d", "-i", str(identity), os.path.join(root, obj["key"])], check=True,
                           stdout=subprocess.PIPE).stdout
    assert plain == b"only" and obj["raw_size"] == 4
    ok = run_module("verify", dict(manifest_key=res.result["manifest_key"], storage=dict(path=root)))
    assert ok.rc == 0, ok.describe()
