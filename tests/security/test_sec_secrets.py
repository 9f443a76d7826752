"""Secrets never leave their channel: for each engine with a password (PostgreSQL, MariaDB) and each
remote storage (S3 secret key; SFTP password; SFTP key passphrase), with gpg encryption by
passphrase, at verbosity 3 (-vvv): no secret in any process's argv while the backup runs
(/proc/*/cmdline sampled every 10 ms), in the module's output, in the stored manifest, in the job's
last-attempt record; and the same for a failing run whose error text comes from the tools.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.cmdline_watch import CmdlineWatch

from ansible_collections.songmetrix.backup.plugins.module_utils.storage import opened_storage

PASSPHRASE = "enc pass 'phrase' \"q\" $(x) " + uuid.uuid4().hex[:8]


def source_for(engine, request):
    if engine == "postgresql":
        server = request.getfixturevalue("pg_server")
        database = request.getfixturevalue("pg_database")
        server.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 20000) g", dbname=database)
    else:
        server = request.getfixturevalue("mariadb_server")
        database = request.getfixturevalue("mariadb_database")
        server.sql("CREATE TABLE t (g INT); INSERT INTO t SELECT seq FROM seq_1_to_20000", database=database)
    return dict(engine=engine, host=server.host, port=server.port, user=server.user, password=server.password,
                database=database), server.password


def storage_for(kind, request):
    if kind == "s3":
        server = request.getfixturevalue("s3_server")
        params = request.getfixturevalue("s3_storage_params")(request.getfixturevalue("s3_bucket"), prefix="sec")
        return params, [server.secret_key]
    sftp = request.getfixturevalue("sftp_server")
    params = dict(request.getfixturevalue("sftp_storage_params"), prefix="sec")
    if kind == "sftp-password":
        assert sftp.password, "the SFTP test server has no password user (needs root)"
        params.pop("private_key")
        params["password"] = sftp.password
        return params, [sftp.password]
    params.update(private_key=sftp.encrypted_key, private_key_passphrase=sftp.encrypted_key_passphrase)
    return params, [sftp.encrypted_key_passphrase]


def assert_nowhere(secrets, *texts):
    for secret in secrets:
        for text in texts:
            assert secret not in text, "a secret leaked into: %s" % text[:300]


@pytest.mark.parametrize("storage_kind", ["s3", "sftp-password", "sftp-key-passphrase"])
@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_no_secret_in_argv_output_manifest_or_attempt_record(request, run_module, engine, storage_kind):
    source, password = source_for(engine, request)
    storage, storage_secrets = storage_for(storage_kind, request)
    secrets = [password, PASSPHRASE, *storage_secrets]
    job = "sec-%s-%s" % (engine, storage_kind)
    args = dict(job=job, source=source, storage=storage, encryption=dict(method="gpg", passphrase=PASSPHRASE))
    with CmdlineWatch(*secrets) as watch:
        ok = run_module("dump", args, extra_internal_args=dict(_ansible_verbosity=3, _ansible_debug=True))
        # A failing run (the database vanished) whose message comes from the dump tool's stderr.
        failed = run_module("dump", dict(args, source=dict(source, database="gone_" + uuid.uuid4().hex[:6])),
                            extra_internal_args=dict(_ansible_verbosity=3, _ansible_debug=True))
        info = run_module("verify", dict(job=job, storage=storage), extra_internal_args=dict(_ansible_verbosity=3))
    assert ok.rc == 0, ok.describe()
    assert failed.failed and "gone_" in failed.msg, failed.describe()
    assert info.rc == 0, info.describe()
    assert watch.seen == [] and watch.samples > 3, watch.seen
    with opened_storage(storage) as opened:
        stored_manifest = opened.get_small(ok.result["manifest_key"]).decode()
        attempt = opened.get_small("sec/%s/last-attempt.json" % job).decode()
    assert json.loads(attempt)["status"] == "failed"
    assert_nowhere(secrets, ok.stdout, ok.stderr, failed.stdout, failed.stderr, info.stdout, info.stderr,
                   stored_manifest, attempt)
