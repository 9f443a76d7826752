"""Hostile storage: an attacker who can write to the storage (a leaked bucket key, a shared SFTP account)
but not to the backup hosts plants, changes and replays manifests, locks and attempt records. With the
job's signing key nothing of theirs is restored, verified as good, counted by prune or obeyed as a lock;
without a key, backups dated after now are still never "latest" and a configured decryption still refuses
a plaintext backup. Real PostgreSQL and MariaDB servers; docs/reliability.md, "Hostile storage".

The loaders' own sandbox (a plain dump's shell commands) and tar extraction are in test_hostile_restore.py.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import uuid

import pytest

from tests.security.planting import next_second, plant_backup

from ansible_collections.songmetrix.backup.plugins.module_utils import layout, signing

KEY = "test-signing-key-" + "x" * 24
KEY_ID = signing.key_id(KEY)
SIGNING = {"key": KEY}
MARK = "/tmp/songmetrix-hostile-" + uuid.uuid4().hex[:8]
SHELL_SQL = ("\\! touch %s\n" % MARK).encode()


@pytest.fixture(autouse=True)
def nothing_ran():
    yield
    assert not os.path.exists(MARK), "a command planted in the storage ran"


def local(storage_dir):
    return {"type": "local", "path": str(storage_dir)}


def pg_job(pg_server, database, storage_dir, **extra):
    source = dict(pg_server.conn_params(), engine="postgresql", database=database, format="custom")
    return dict(job="orders", source=source, storage=local(storage_dir), **extra)


def pg_target(pg_server, database):
    return dict(pg_server.conn_params(), engine="postgresql", database=database)


def seeded(pg_server, database, rows=5):
    pg_server.psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, %d);" % rows, dbname=database)
    return database


def dump(run_module, args):
    res = run_module("dump", args)
    assert res.rc == 0, res.describe()
    return res.result


def later(manifest_key, seconds=1):
    """A start time just after the backup of ``manifest_key``: a planted backup 'newer' than it."""
    started = layout.parse_manifest_key(manifest_key)["started"]
    return started + datetime.timedelta(seconds=seconds)


def plant_newer(storage_dir, manifest_key, job, payload, **fields):
    """Plant a backup a second newer than ``manifest_key`` and wait until that second is past, so that it is
    the newest backup and not one dated in the future."""
    planted = plant_backup(storage_dir, job, payload, started=later(manifest_key), **fields)
    next_second()
    next_second()
    return planted


# --- 2. Backups are not authenticated -------------------------------------------------------------------


def test_restore_latest_passes_over_a_planted_newer_backup_and_restores_the_signed_one(
        run_module, pg_server, pg_database, storage_dir):
    real = dump(run_module, pg_job(pg_server, seeded(pg_server, pg_database), storage_dir, signing=SIGNING))
    planted = plant_newer(storage_dir, real["manifest_key"], "orders", SHELL_SQL, fmt="plain")
    target = pg_server.create_database("restored_" + uuid.uuid4().hex[:6])

    res = run_module("restore", dict(job="orders", latest=True, storage=local(storage_dir), signing=SIGNING,
                                     target=pg_target(pg_server, target)))

    assert res.rc == 0, res.describe()
    assert res.result["manifest_key"] == real["manifest_key"]
    assert pg_server.psql("SELECT count(*) FROM t", dbname=target) == "5"
    warning = " ".join(res.warnings)
    assert planted.manifest_key in warning and KEY_ID in warning and "not signed" in warning


def test_restore_of_a_planted_backup_by_its_key_is_refused_naming_the_key_id(
        run_module, pg_server, pg_database, storage_dir):
    dump(run_module, pg_job(pg_server, seeded(pg_server, pg_database), storage_dir, signing=SIGNING))
    planted = plant_backup(storage_dir, "orders", SHELL_SQL, fmt="plain")
    target = pg_server.create_database("restored_" + uuid.uuid4().hex[:6])

    res = run_module("restore", dict(manifest_key=planted.manifest_key, storage=local(storage_dir), signing=SIGNING,
                                     target=pg_target(pg_server, target)))

    assert res.failed and "is not signed" in res.msg and KEY_ID in res.msg and "nothing was restored" in res.msg
    assert pg_server.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", dbname=target) == "0"


def test_a_signed_manifest_switched_to_plain_format_is_refused(run_module, pg_server, pg_database, storage_dir):
    """The manifest's format picks the loader: the attacker rewrites a real custom-format backup as plain SQL."""
    real = dump(run_module, pg_job(pg_server, seeded(pg_server, pg_database), storage_dir, signing=SIGNING))
    manifest_path = storage_dir / real["manifest_key"]
    record = json.loads(manifest_path.read_text())
    forged = plant_backup(storage_dir / "forge", "orders", SHELL_SQL, fmt="plain",
                          started=layout.parse_manifest_key(real["manifest_key"])["started"])
    artifact = storage_dir / real["artifact"]
    shutil.copyfile(forged.artifact_path, artifact)  # the new bytes under the old key
    record.update(format="plain", sha256=forged.record["sha256"], stored_size=forged.record["stored_size"],
                  raw_size=forged.record["raw_size"], compression=forged.record["compression"])
    manifest_path.write_bytes((json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    target = pg_server.create_database("restored_" + uuid.uuid4().hex[:6])

    for selection in ({"manifest_key": real["manifest_key"]}, {"job": "orders", "latest": True}):
        res = run_module("restore", dict(selection, storage=local(storage_dir), signing=SIGNING,
                                         target=pg_target(pg_server, target)))
        assert res.failed and "bad signature" in res.msg, res.describe()

    res = run_module("verify", dict(job="orders", storage=local(storage_dir), signing=SIGNING, deep=True))
    assert res.failed and res.result["bad"] == 1 and "bad signature" in res.result["backups"][0]["problem"]


def test_a_signed_manifest_replayed_as_a_newer_backup_is_passed_over(
        run_module, pg_server, pg_database, storage_dir):
    """Rollback: the attacker copies an old signed backup under a newer name, so it would be the latest."""
    old = dump(run_module, pg_job(pg_server, seeded(pg_server, pg_database, rows=1), storage_dir, signing=SIGNING))
    next_second()
    pg_server.psql("INSERT INTO t VALUES (2)", dbname=pg_database)
    new = dump(run_module, pg_job(pg_server, pg_database, storage_dir, signing=SIGNING))
    replay_stem = layout.backup_stem("", "orders", "scheduled", later(new["manifest_key"]))
    replay_key = layout.manifest_key(replay_stem)
    (storage_dir / replay_key).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(storage_dir / old["manifest_key"], storage_dir / replay_key)
    shutil.copyfile(storage_dir / old["artifact"], storage_dir / (replay_stem + ".dump.zst"))
    next_second()
    next_second()  # the replay is the newest backup, and not one dated in the future
    target = pg_server.create_database("restored_" + uuid.uuid4().hex[:6])

    res = run_module("restore", dict(job="orders", latest=True, storage=local(storage_dir), signing=SIGNING,
                                     target=pg_target(pg_server, target)))

    assert res.rc == 0, res.describe()
    assert res.result["manifest_key"] == new["manifest_key"]
    assert pg_server.psql("SELECT count(*) FROM t", dbname=target) == "2"
    assert replay_key in " ".join(res.warnings)
    res = run_module("restore", dict(manifest_key=replay_key, storage=local(storage_dir), signing=SIGNING,
                                     target=pg_target(pg_server, target), force=True))
    assert res.failed and "but its key says" in res.msg


def test_a_backup_dated_in_the_future_is_never_latest_even_without_a_key(
        run_module, pg_server, pg_database, storage_dir):
    real = dump(run_module, pg_job(pg_server, seeded(pg_server, pg_database), storage_dir))
    future = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    planted = plant_backup(storage_dir, "orders", SHELL_SQL, fmt="plain", started=future)

    for selection in ({"latest": True}, {"before": "2031-01-01"}):
        target = pg_server.create_database("restored_" + uuid.uuid4().hex[:6])
        res = run_module("restore", dict(selection, job="orders", storage=local(storage_dir),
                                         target=pg_target(pg_server, target)))
        assert res.rc == 0, res.describe()
        assert res.result["manifest_key"] == real["manifest_key"]
        assert planted.manifest_key in " ".join(res.warnings)
        assert pg_server.psql("SELECT count(*) FROM t", dbname=target) == "5"

    # The scheduled restore test (scratch, latest) picks the real one too.
    res = run_module("restore", dict(job="orders", latest=True, scratch=True, storage=local(storage_dir),
                                     target=dict(pg_server.conn_params(), engine="postgresql")))
    assert res.rc == 0, res.describe()
    assert res.result["manifest_key"] == real["manifest_key"] and res.result["restore_test"]["ok"]


def test_a_configured_decryption_refuses_a_plaintext_backup(run_module, mariadb_server, mariadb_database,
                                                            storage_dir, tmp_path):
    """encryption: null in a planted manifest used to be restored silently although the job decrypts."""
    planted = plant_backup(storage_dir, "shop", b"CREATE TABLE planted (id int);\n", engine="mariadb", fmt="sql")
    identity = "AGE-SECRET-KEY-1" + "Q" * 58  # never used: the refusal comes before any decryption
    target = dict(mariadb_server.conn_params(), engine="mariadb", database=mariadb_database)

    res = run_module("restore", dict(job="shop", latest=True, storage=local(storage_dir), target=target,
                                     decryption={"identity": identity}))

    assert res.failed and "is not encrypted, but decryption is configured" in res.msg, res.describe()
    assert planted.manifest_key in res.msg
    assert mariadb_server.sql("SHOW TABLES", mariadb_database) == ""
    res = run_module("restore", dict(job="shop", latest=True, storage=local(storage_dir), target=target,
                                     decryption={"identity": identity}, allow_unencrypted=True))
    assert res.rc == 0, res.describe()
    assert mariadb_server.sql("SHOW TABLES", mariadb_database) == "planted"
    assert "not encrypted" in " ".join(res.warnings)


def test_mariadb_latest_passes_over_a_planted_backup(run_module, mariadb_server, mariadb_database, storage_dir):
    mariadb_server.sql("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);", mariadb_database)
    source = dict(mariadb_server.conn_params(), engine="mariadb", database=mariadb_database)
    real = dump(run_module, dict(job="shop", source=source, storage=local(storage_dir), signing=SIGNING))
    plant_newer(storage_dir, real["manifest_key"], "shop", b"system touch " + MARK.encode() + b"\n",
                engine="mariadb", fmt="sql")
    target_db = mariadb_server.create_database("restored_" + uuid.uuid4().hex[:6])

    res = run_module("restore", dict(job="shop", latest=True, storage=local(storage_dir), signing=SIGNING,
                                     target=dict(source, database=target_db)))

    assert res.rc == 0, res.describe()
    assert res.result["manifest_key"] == real["manifest_key"]
    assert mariadb_server.sql("SELECT count(*) FROM t", target_db) == "2"


def test_verify_and_backup_info_flag_what_the_key_did_not_sign(run_module, pg_server, pg_database, storage_dir):
    real = dump(run_module, pg_job(pg_server, seeded(pg_server, pg_database), storage_dir, signing=SIGNING))
    planted = plant_newer(storage_dir, real["manifest_key"], "orders",
                          b"SELECT 1;\n-- PostgreSQL database dump complete\n", fmt="plain")

    res = run_module("verify", dict(job="orders", storage=local(storage_dir), signing=SIGNING))
    assert res.failed and res.result["verified"] == 1 and res.result["bad"] == 1
    by_key = {b["manifest_key"]: b for b in res.result["backups"]}
    assert by_key[real["manifest_key"]]["authentication"] == {"status": "authenticated", "key_id": KEY_ID,
                                                              "problem": None}
    assert by_key[planted.manifest_key]["authentication"]["status"] == "unauthenticated"
    assert by_key[planted.manifest_key]["checked_bytes"] == 0

    res = run_module("backup_info", dict(job="orders", storage=local(storage_dir), signing=SIGNING))
    assert res.rc == 0, res.describe()
    assert res.result["unauthenticated"] == [planted.manifest_key]
    assert planted.manifest_key in " ".join(res.warnings)
    assert "manifest" not in res.result["backups"][0]  # read to check it, returned only with details

    # Without a key nothing changes, and nothing is called authenticated.
    res = run_module("verify", dict(job="orders", storage=local(storage_dir)))
    assert res.rc == 0, res.describe()
    assert {b["authentication"]["status"] for b in res.result["backups"]} == {"unauthenticated"}
    res = run_module("backup_info", dict(job="orders", storage=local(storage_dir)))
    assert {b["authentication"]["status"] for b in res.result["backups"]} == {"unauthenticated"}


# --- 3. Prune can be steered ------------------------------------------------------------------------------


def test_planted_newer_backups_do_not_push_signed_ones_out_of_prune(run_module, pg_server, pg_database,
                                                                     storage_dir):
    args = pg_job(pg_server, seeded(pg_server, pg_database), storage_dir, signing=SIGNING)
    real = []
    for _ in range(4):
        next_second()
        next_second()  # two seconds apart, so a junk backup fits between two real ones
        real.append(dump(run_module, args)["manifest_key"])
    # Three junk backups, each a second newer than one of the three newest real ones.
    junk = [plant_backup(storage_dir, "orders", b"junk", fmt="plain", started=later(key)).manifest_key
            for key in real[1:]]

    res = run_module("prune", dict(job="orders", storage=local(storage_dir), signing=SIGNING,
                                   retention={"keep_last": 3}))

    assert res.rc == 0, res.describe()
    kept = {k["manifest_key"]: k["reasons"] for k in res.result["kept"]}
    assert all("last" in kept[key] for key in real[1:])  # the three newest signed ones
    assert all((storage_dir / key).exists() for key in real[1:])
    # The policy still works: the oldest signed one goes, and so does the junk the policy over the whole
    # history would not keep; the rest of the junk stays, named, never in a signed one's place.
    assert {d["manifest_key"] for d in res.result["deleted"]} == {real[0], junk[0]}
    assert kept[junk[1]] == kept[junk[2]] == ["unauthenticated"]
    assert any("not signed by its key" in w and junk[2] in w for w in res.warnings)


def test_a_planted_lock_does_not_stop_a_signed_job_and_prune_ignores_it(run_module, pg_server, pg_database,
                                                                        storage_dir):
    args = pg_job(pg_server, seeded(pg_server, pg_database), storage_dir, signing=SIGNING)
    dump(run_module, args)
    lock = storage_dir / "orders" / "lock.json"
    lock.write_text(json.dumps({"job": "orders", "host": "elsewhere", "pid": 1, "owner": "mallory",
                                "token": "t", "acquired": "2026-01-01T00:00:00Z", "expires": "2099-01-01T00:00:00Z"}))
    next_second()

    res = run_module("dump", args)
    assert res.rc == 0, res.describe()
    assert any("took over the lock" in w and "is not signed" in w for w in res.warnings)

    lock.write_text(json.dumps({"job": "orders", "expires": "2099-01-01T00:00:00Z"}))
    res = run_module("prune", dict(job="orders", storage=local(storage_dir), signing=SIGNING,
                                   retention={"keep_last": 1}))
    assert res.rc == 0 and len(res.result["deleted"]) == 1 and res.result["stopped"] is None, res.describe()
    assert any("was ignored" in w for w in res.warnings)


def test_a_planted_ok_attempt_record_does_not_let_prune_run_after_a_failure(run_module, pg_server, pg_database,
                                                                           storage_dir):
    args = pg_job(pg_server, seeded(pg_server, pg_database), storage_dir, signing=SIGNING)
    dump(run_module, args)
    next_second()
    dump(run_module, args)
    next_second()
    failed = run_module("dump", dict(args, source=dict(args["source"], database="no_such_db")))
    assert failed.failed
    record_path = storage_dir / "orders" / "last-attempt.json"
    record = json.loads(record_path.read_text())
    assert record["status"] == "failed" and record["signature"]["key_id"] == KEY_ID
    record.update(status="ok", error=None)
    del record["signature"]
    record_path.write_text(json.dumps(record, sort_keys=True) + "\n")

    res = run_module("prune", dict(job="orders", storage=local(storage_dir), signing=SIGNING,
                                   retention={"keep_last": 1}))

    assert res.rc == 0 and res.result["deleted"] == [], res.describe()
    assert "unauthenticated" in res.result["stopped"] and "not signed" in res.result["stopped"]


def test_the_spool_does_not_upload_a_planted_backup(run_module, tmp_path, storage_dir):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    args = dict(job="files", source={"engine": "files", "path": str(src)}, storage=local(storage_dir),
                spool_dir=str(spool_dir), signing=SIGNING)
    dump(run_module, args)  # makes nothing in the spool, but tells where it lives
    from ansible_collections.songmetrix.backup.plugins.module_utils.spool import Spool
    from ansible_collections.songmetrix.backup.plugins.module_utils.storage import make_storage

    spool_root = Spool(str(spool_dir), make_storage(local(storage_dir))).root
    an_hour_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    planted = plant_backup(spool_root, "files", b"x" * 1024, engine="files", fmt="tar", started=an_hour_ago)

    res = run_module("upload", dict(job="files", storage=local(storage_dir), spool_dir=str(spool_dir),
                                    signing=SIGNING))

    assert res.failed and "spooled backup not uploaded" in res.msg and "is not signed" in res.msg
    assert not (storage_dir / planted.manifest_key).exists()
    assert (planted.manifest_path).exists()  # kept where it was, for a person to look at
