"""engine mssql, url mode: BACKUP DATABASE TO URL into the job's S3 storage (moto), striped; restore FROM URL."""

import hashlib
import json

import pytest
from mssql_support import PASSWORD, FakeSqlcmd, assert_no_secret

DATABASE = "sh]op's"


@pytest.fixture
def fake_sqlcmd(tmp_path):
    fake = FakeSqlcmd(tmp_path)
    fake.set(FAKE_DATABASES=[DATABASE])
    return fake


def url_source(**mssql):
    opts = {"mode": "url"}
    opts.update(mssql)
    return {"engine": "mssql", "host": "db.example", "user": "sa", "password": PASSWORD, "database": DATABASE,
            "mssql": opts}


def endpoint(s3_server):
    return s3_server.endpoint_url.split("://", 1)[1]


def stored(s3_server, bucket, key):
    return s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def test_striped_backup_to_url_manifest_and_secrets(run_module, fake_sqlcmd, s3_server, s3_bucket, s3_storage_params):
    storage = s3_storage_params(s3_bucket)
    res = run_module("dump", dict(job="shop", source=url_source(stripes=3), storage=storage), env=fake_sqlcmd.env)
    assert res.rc == 0, res.describe()
    manifest = res.result["manifest"]
    stem = res.result["manifest_key"][: -len(".manifest.json")]
    assert manifest["artifact"] == stem + ".stripe1of3.bak"
    assert [a["key"] for a in manifest["attachments"]] == [stem + ".stripe2of3.bak", stem + ".stripe3of3.bak"]
    assert all(a["role"] == "stripe" for a in manifest["attachments"])
    assert manifest["compression"] == {"algorithm": "none", "level": None}
    assert manifest["engine"] == "mssql" and manifest["format"] == "bak"
    assert manifest["mssql"]["mode"] == "url" and manifest["mssql"]["stripes"] == 3
    # Every size and SHA-256 in the manifest is that of the object SQL Server wrote.
    first = stored(s3_server, s3_bucket, manifest["artifact"])
    assert (len(first), hashlib.sha256(first).hexdigest()) == (manifest["stored_size"], manifest["sha256"])
    total = len(first)
    for attachment in manifest["attachments"]:
        data = stored(s3_server, s3_bucket, attachment["key"])
        assert (len(data), hashlib.sha256(data).hexdigest()) == (attachment["size"], attachment["sha256"])
        total += len(data)
    assert manifest["raw_size"] == total
    assert json.loads(stored(s3_server, s3_bucket, res.result["manifest_key"])) == manifest

    probe, backup, verify = fake_sqlcmd.statements()
    host = endpoint(s3_server)
    urls = ["N's3://%s/%s/%s.stripe%dof3.bak'" % (host, s3_bucket, stem, i) for i in (1, 2, 3)]
    credential = "s3://%s/%s" % (host, s3_bucket)
    secret = "%s:%s" % (s3_server.access_key, s3_server.secret_key)
    body = "WITH IDENTITY = 'S3 Access Key', SECRET = N'%s'" % secret
    assert backup["sql"] == (
        "SET NOCOUNT ON;\n"
        "IF EXISTS (SELECT 1 FROM sys.credentials WHERE name = N'%s')\n"
        "    ALTER CREDENTIAL [%s] %s;\n"
        "ELSE\n"
        "    CREATE CREDENTIAL [%s] %s;\n"
        "BACKUP DATABASE [sh]]op's] TO URL = %s, URL = %s, URL = %s WITH COPY_ONLY, COMPRESSION, CHECKSUM, FORMAT, "
        "MAXTRANSFERSIZE = 20971520, BACKUP_OPTIONS = '{\"s3\": {\"region\": \"%s\"}}';\n"
        % (credential, credential, body, credential, body, urls[0], urls[1], urls[2], s3_server.region)
    )
    assert verify["sql"] == "SET NOCOUNT ON;\nRESTORE VERIFYONLY FROM URL = %s WITH CHECKSUM;\n" % ", URL = ".join(urls)
    assert backup["script_mode"] == "0o600"
    # The S3 secret travels only in the T-SQL file: never argv (/proc/<pid>/cmdline), result or manifest.
    everything = json.dumps(res.result) + res.stdout + res.stderr
    assert_no_secret(s3_server.secret_key, fake_sqlcmd, everything, json.dumps(manifest))
    assert_no_secret(PASSWORD, fake_sqlcmd, everything)
    assert "HTTPS" in json.dumps(res.result.get("warnings"))  # moto speaks http; SQL Server would not


def test_single_url_and_restore_from_url(run_module, fake_sqlcmd, s3_server, s3_bucket, s3_storage_params):
    storage = s3_storage_params(s3_bucket)
    res = run_module("dump", dict(job="shop", source=url_source(copy_only=False, verify=False), storage=storage),
                     env=fake_sqlcmd.env)
    assert res.rc == 0, res.describe()
    manifest = res.result["manifest"]
    stem = res.result["manifest_key"][: -len(".manifest.json")]
    assert manifest["artifact"] == stem + ".bak" and "attachments" not in manifest
    backup_sha = fake_sqlcmd.events("backup_sha256")[0]["backup_sha256"]
    assert manifest["sha256"] == backup_sha  # one stripe: the object is the whole backup
    assert "COPY_ONLY" not in fake_sqlcmd.statements()[1]["sql"]
    assert len(fake_sqlcmd.statements()) == 2  # verify: false

    fake_sqlcmd.log.unlink()
    target = {"engine": "mssql", "host": "db.example", "user": "sa", "password": PASSWORD, "database": "restored",
              "mssql": {"data_dir": "/var/opt/mssql/data"}}
    res = run_module("restore", dict(storage=storage, manifest_key=res.result["manifest_key"], target=target),
                     env=fake_sqlcmd.env)
    assert res.rc == 0, res.describe()
    _probe, filelist, restore = fake_sqlcmd.statements()
    url = "N's3://%s/%s/%s.bak'" % (endpoint(s3_server), s3_bucket, stem)
    assert filelist["sql"].endswith("RESTORE FILELISTONLY FROM URL = %s;\n" % url)
    assert "CREATE CREDENTIAL" in filelist["sql"] and "CREATE CREDENTIAL" in restore["sql"]
    assert restore["sql"].endswith(
        "RESTORE DATABASE [restored] FROM URL = %s WITH MOVE N'%s' TO N'/var/opt/mssql/data/restored_%s.mdf', "
        "MOVE N'%s_log' TO N'/var/opt/mssql/data/restored_%s_log.ldf', CHECKSUM, RECOVERY, "
        "RESTORE_OPTIONS = '{\"s3\": {\"region\": \"%s\"}}';\n"
        % (url, "sh]op''s", "sh_op_s", "sh]op''s", "sh_op_s", s3_server.region))
    assert fake_sqlcmd.events("restored")[0]["sha256"] == backup_sha
    assert_no_secret(s3_server.secret_key, fake_sqlcmd, json.dumps(res.result))


def test_striped_restore_from_url_reads_every_stripe(run_module, fake_sqlcmd, s3_bucket, s3_storage_params):
    storage = s3_storage_params(s3_bucket)
    res = run_module("dump", dict(job="shop", source=url_source(stripes=2), storage=storage), env=fake_sqlcmd.env)
    assert res.rc == 0, res.describe()
    backup_sha = fake_sqlcmd.events("backup_sha256")[0]["backup_sha256"]
    target = {"engine": "mssql", "host": "db.example", "user": "sa", "password": PASSWORD, "database": "r2"}
    key = res.result["manifest_key"]
    res = run_module("restore", dict(storage=storage, manifest_key=key, target=target), env=fake_sqlcmd.env)
    assert res.rc == 0, res.describe()
    assert fake_sqlcmd.events("restored")[-1]["sha256"] == backup_sha
    assert restore_from_disk_refused(run_module, fake_sqlcmd, storage, key)


def restore_from_disk_refused(run_module, fake, storage, key):
    target = {"engine": "mssql", "database": "r3", "mssql": {"mode": "native", "server_dir": "/srv/x",
                                                             "local_dir": str(fake.share)}}
    res = run_module("restore", dict(storage=storage, manifest_key=key, target=target), env=fake.env)
    return res.rc != 0 and "striped over 2 objects" in res.msg


def test_failure_leaves_no_objects_and_no_manifest(run_module, fake_sqlcmd, s3_server, s3_bucket, s3_storage_params):
    fake_sqlcmd.set(FAKE_MODE="verifyonly_fails")
    res = run_module("dump", dict(job="shop", source=url_source(stripes=2), storage=s3_storage_params(s3_bucket)),
                     env=fake_sqlcmd.env)
    assert res.rc != 0 and "Damage to the backup set was detected" in res.msg, res.describe()
    assert [k for k in s3_server.keys(s3_bucket) if k.endswith(".bak") or k.endswith(".manifest.json")] == []
    assert_no_secret(s3_server.secret_key, fake_sqlcmd, json.dumps(res.result))


def test_url_needs_sql_server_2022_and_s3_keys(run_module, fake_sqlcmd, s3_bucket, s3_storage_params, tmp_path):
    fake_sqlcmd.set(FAKE_PRODUCT="15.0.4345.5")
    res = run_module("dump", dict(job="shop", source=url_source(), storage=s3_storage_params(s3_bucket)),
                     env=fake_sqlcmd.env)
    assert res.rc != 0 and "SQL Server 2022 (16.x) or later" in res.msg and "15.0.4345.5" in res.msg
    assert not any("BACKUP" in c["sql"] for c in fake_sqlcmd.statements())
    res = run_module("dump", dict(job="shop", source=url_source(), storage=dict(path=str(tmp_path / "local"))),
                     env=fake_sqlcmd.env)
    assert res.rc != 0 and "needs storage.type s3" in res.msg
    storage = s3_storage_params(s3_bucket, access_key=None, secret_key=None, profile="default")
    res = run_module("dump", dict(job="shop", source=url_source(), storage=storage), env=fake_sqlcmd.env)
    assert res.rc != 0 and "access_key" in res.msg


def test_check_mode_writes_nothing(run_module, fake_sqlcmd, s3_server, s3_bucket, s3_storage_params):
    res = run_module("dump", dict(job="shop", source=url_source(stripes=2), storage=s3_storage_params(s3_bucket)),
                     check_mode=True, env=fake_sqlcmd.env)
    assert res.rc == 0 and res.result["changed"], res.describe()
    assert [("BACKUP" in c["sql"] or "CREDENTIAL" in c["sql"]) for c in fake_sqlcmd.statements()] == [False]
    assert s3_server.keys(s3_bucket) == []
    assert_no_secret(s3_server.secret_key, fake_sqlcmd, json.dumps(res.result))


@pytest.mark.parametrize("extra", [dict(encryption=dict(method="gpg", passphrase="a long passphrase")),
                                   dict(max_chunk_size="64M")])
def test_url_mode_refuses_encryption_and_chunks(run_module, fake_sqlcmd, s3_server, s3_bucket, s3_storage_params,
                                                extra):
    """SQL Server writes the objects itself: nothing of ours can encrypt or split them, so say so."""
    res = run_module("dump", dict(job="shop", source=url_source(), storage=s3_storage_params(s3_bucket), **extra),
                     env=fake_sqlcmd.env)
    assert res.rc != 0 and "use mode native" in res.msg, res.describe()
    assert not any("BACKUP" in c["sql"] for c in fake_sqlcmd.statements())
    assert s3_server.keys(s3_bucket) == []
