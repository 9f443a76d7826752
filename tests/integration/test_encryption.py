"""Client-side encryption (age, gpg): dump -> restore round trips on real servers, what the manifest
records, secrets kept out of argv and results, and the errors for a missing or wrong key."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pty
import sqlite3
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.cmdline_watch import CmdlineWatch
from tests.integration.test_restore_docs import (
    MY_SCHEMA,
    PG_SCHEMA,
    my_digest,
    pg_digest,
    run_doc,
    sqlite_dump,
)

PASSPHRASE = "correct horse " + uuid.uuid4().hex  # a value that can only come from this test


@pytest.fixture(scope="module")
def age_key(tmp_path_factory):
    """(identity file, identity text, public key) of a fresh age key pair."""
    path = tmp_path_factory.mktemp("age") / "key.txt"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    text = path.read_text()
    public = next(line.split(": ")[1] for line in text.splitlines() if line.startswith("# public key: "))
    return path, text, public


@pytest.fixture(scope="module")
def gpg_key(tmp_path_factory):
    """(public key file, secret key file, fingerprint) of a fresh OpenPGP key without passphrase."""
    base = tmp_path_factory.mktemp("gpg")
    home = Path(tempfile.mkdtemp(prefix="t-gpg-"))
    home.chmod(0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet"]
    subprocess.run(gpg + ["--passphrase", "", "--quick-gen-key", "Backup Test <backup@example.com>", "default",
                          "default", "never"], check=True, capture_output=True)
    public, secret = base / "public.asc", base / "secret.asc"
    public.write_bytes(subprocess.run(gpg + ["--armor", "--export"], check=True, capture_output=True).stdout)
    secret.write_bytes(subprocess.run(gpg + ["--armor", "--export-secret-keys"], check=True,
                                      capture_output=True).stdout)
    listing = subprocess.run(gpg + ["--with-colons", "--list-keys"], check=True, capture_output=True, text=True)
    fingerprint = next(line.split(":")[9] for line in listing.stdout.splitlines() if line.startswith("fpr"))
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    subprocess.run(["rm", "-rf", str(home)], check=True)
    return public, secret, fingerprint


def gpg_homes():
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "sm-gpg-*")))


def stock_age_decrypt(path, identity_file):
    return subprocess.run(["age", "-d", "-i", str(identity_file), str(path)], check=True,
                          capture_output=True).stdout


def without_plaintext(info):
    """The manifest's encryption record minus the plaintext checksum (checked where the plaintext is known)."""
    assert len(info["plaintext_sha256"]) == 64 and info["plaintext_size"] > 0
    return {k: v for k, v in info.items() if not k.startswith("plaintext_")}


def make_sqlite(path, rows=300):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO notes (body) VALUES (?)", [("note %d ünïcødé" % i,) for i in range(rows)])
    conn.commit()
    conn.close()


def sqlite_backup(run_module, tmp_path, encryption, **extra):  # encryption None: a plain backup
    db = tmp_path / "app.sqlite3"
    if not db.exists():
        make_sqlite(db)
    store = str(tmp_path / "store")
    res = run_module("dump", dict(job="app-db", source=dict(engine="sqlite", path=str(db)),
                                  storage=dict(path=store, prefix="prod"), encryption=encryption, **extra))
    assert res.rc == 0, res.describe()
    return db, store, res.result


def test_age_round_trip_sqlite_and_what_the_manifest_says(run_module, tmp_path, age_key):
    identity_file, identity, public = age_key
    db, store, dumped = sqlite_backup(run_module, tmp_path, dict(method="age", recipients=[public]))
    record = dumped["manifest"]
    assert record["artifact"].endswith(".sqlite3.zst.age")
    plaintext = stock_age_decrypt(os.path.join(store, record["artifact"]), identity_file)
    assert record["encryption"] == {"method": "age", "recipients": [public], "plaintext_size": len(plaintext),
                                    "plaintext_sha256": hashlib.sha256(plaintext).hexdigest()}
    assert plaintext.startswith(b"\x28\xb5\x2f\xfd")  # the plaintext is the zstd stream
    with open(os.path.join(store, record["artifact"]), "rb") as handle:
        assert handle.read(21) == b"age-encryption.org/v1"  # a plain age file, nothing of ours around it

    target = tmp_path / "restored.sqlite3"
    with CmdlineWatch(identity.splitlines()[-1]) as watch:
        res = run_module("restore", dict(job="app-db", latest=True, storage=dict(path=store, prefix="prod"),
                                         target=dict(engine="sqlite", path=str(target)),
                                         decryption=dict(identity=identity)))
    assert res.rc == 0, res.describe()
    assert watch.samples > 3 and watch.seen == []
    assert identity.splitlines()[-1] not in res.stdout
    assert sqlite_dump(target) == sqlite_dump(db)

    by_file = tmp_path / "by-file.sqlite3"
    res = run_module("restore", dict(job="app-db", latest=True, storage=dict(path=store, prefix="prod"),
                                     target=dict(engine="sqlite", path=str(by_file)),
                                     decryption=dict(identity_files=[str(identity_file)])))
    assert res.rc == 0, res.describe()
    assert sqlite_dump(by_file) == sqlite_dump(db)


def test_age_without_or_with_the_wrong_key_restores_nothing(run_module, tmp_path, age_key):
    _, _, public = age_key
    _, store, _ = sqlite_backup(run_module, tmp_path, dict(method="age", recipients=[public]))
    target = tmp_path / "restored.sqlite3"
    args = dict(job="app-db", latest=True, storage=dict(path=store, prefix="prod"),
                target=dict(engine="sqlite", path=str(target)))
    res = run_module("restore", args)
    assert res.failed
    assert "encrypted with age to %s" % public in res.msg and "decryption.identity" in res.msg

    other = tmp_path / "other.txt"
    subprocess.run(["age-keygen", "-o", str(other)], check=True, capture_output=True)
    res = run_module("restore", dict(args, decryption=dict(identity_files=[str(other)])))
    assert res.failed
    assert "no identity matched" in res.msg
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("restored")] == []


def test_gpg_symmetric_round_trip_postgresql_keeps_the_passphrase_out_of_sight(
        pg_server, run_module, tmp_path):
    source_db = "encsrc_" + uuid.uuid4().hex[:8]
    target_db = "encdst_" + uuid.uuid4().hex[:8]
    pg_server.create_database(source_db)
    pg_server.psql(PG_SCHEMA, dbname=source_db)
    store = str(tmp_path / "store")
    conn = dict(engine="postgresql", host=pg_server.host, port=pg_server.port, user=pg_server.user,
                password=pg_server.password)
    homes_before = gpg_homes()
    try:
        with CmdlineWatch(PASSPHRASE) as watch:
            res = run_module("dump", dict(job="orders-db", source=dict(conn, database=source_db),
                                          storage=dict(path=store),
                                          encryption=dict(method="gpg", passphrase=PASSPHRASE)))
            assert res.rc == 0, res.describe()
            record = res.result["manifest"]
            restored = run_module("restore", dict(job="orders-db", latest=True, storage=dict(path=store),
                                                  target=dict(conn, database=target_db), create_database=True,
                                                  decryption=dict(passphrase=PASSPHRASE)))
        assert restored.rc == 0, restored.describe()
        assert watch.seen == [] and watch.samples > 3
        assert record["artifact"].endswith(".dump.zst.gpg")
        assert without_plaintext(record["encryption"]) == {"method": "gpg", "mode": "symmetric", "cipher": "AES256"}
        for text in (res.stdout, restored.stdout, Path(store, res.result["manifest_key"]).read_text()):
            assert PASSPHRASE not in text
        assert pg_digest(pg_server, target_db) == pg_digest(pg_server, source_db)
        assert gpg_homes() == homes_before  # the throw-away GNUPGHOMEs are gone

        wrong = run_module("restore", dict(job="orders-db", latest=True, storage=dict(path=store),
                                           target=dict(conn, database=target_db + "_w"), create_database=True,
                                           decryption=dict(passphrase="not it")))
        assert wrong.failed
        assert "gpg --decrypt" in wrong.msg and "decryption failed" in wrong.msg
    finally:
        for name in (source_db, target_db, target_db + "_w"):
            pg_server.drop_database(name)


def test_gpg_public_key_round_trip_mariadb(mariadb_server, run_module, tmp_path, gpg_key):
    public, secret, fingerprint = gpg_key
    source_db = "encshop_" + uuid.uuid4().hex[:8]
    target_db = "encdst_" + uuid.uuid4().hex[:8]
    mariadb_server.create_database(source_db)
    mariadb_server.sql(MY_SCHEMA, database=source_db)
    store = str(tmp_path / "store")
    conn = dict(engine="mariadb", host=mariadb_server.host, port=mariadb_server.port, user=mariadb_server.user,
                password=mariadb_server.password)
    try:
        res = run_module("dump", dict(job="shop-db", source=dict(conn, database=source_db), storage=dict(path=store),
                                      encryption=dict(method="gpg", recipient_files=[str(public)])))
        assert res.rc == 0, res.describe()
        assert without_plaintext(res.result["manifest"]["encryption"]) == {
            "method": "gpg", "mode": "public-key", "cipher": "AES256", "recipients": [fingerprint]}
        no_key = run_module("restore", dict(job="shop-db", latest=True, storage=dict(path=store),
                                            target=dict(conn, database=target_db), create_database=True))
        assert no_key.failed and fingerprint in no_key.msg
        restored = run_module("restore", dict(job="shop-db", latest=True, storage=dict(path=store),
                                              target=dict(conn, database=target_db), create_database=True,
                                              decryption=dict(identity=secret.read_text())))
        assert restored.rc == 0, restored.describe()
        assert my_digest(mariadb_server, target_db) == my_digest(mariadb_server, source_db)
        assert "PRIVATE KEY BLOCK" not in restored.stdout
    finally:
        mariadb_server.drop_database(source_db)
        mariadb_server.drop_database(target_db)


def test_deep_verify_of_an_encrypted_backup_needs_the_key(run_module, tmp_path, age_key):
    _, identity, public = age_key
    _, store, dumped = sqlite_backup(run_module, tmp_path, dict(method="age", recipients=[public]))
    args = dict(manifest_key=dumped["manifest_key"], storage=dict(path=store, prefix="prod"))
    assert run_module("verify", args).rc == 0  # the SHA-256 of the stored bytes needs no key
    res = run_module("verify", dict(args, deep=True))
    assert res.failed and "decryption.identity" in res.msg
    res = run_module("verify", dict(args, deep=True, decryption=dict(identity=identity)))
    assert res.rc == 0, res.describe()
    assert res.result["backups"][0]["deep"] is True


@pytest.mark.parametrize("encryption,message", [
    # Passphrases longer than one letter: Ansible masks no_log values wherever they appear in the message.
    (dict(method="age", passphrase=PASSPHRASE, recipients=["age1xyz"]), "not both"),
    (dict(method="age", passphrase="two\nlines " + PASSPHRASE), "cannot contain line breaks"),
    (dict(method="age"), "age encryption needs encryption.recipients"),
    (dict(method="age", recipients=["not-a-key"]), "neither an age1... public key nor an SSH public key"),
    (dict(method="gpg"), "exactly one of encryption.passphrase"),
    (dict(method="gpg", passphrase=PASSPHRASE, recipient_files=["/nonexistent.asc"]), "exactly one of"),
    (dict(method="gpg", recipients=["ABCD"]), "encryption.recipients is for age"),
    (dict(method="gpg", passphrase=PASSPHRASE, cipher="ROT13"), "encryption.cipher must be one of"),
])
def test_bad_encryption_options_are_refused_before_anything_runs(run_module, tmp_path, encryption, message):
    db = tmp_path / "app.sqlite3"
    make_sqlite(db)
    store = tmp_path / "store"
    res = run_module("dump", dict(job="app-db", source=dict(engine="sqlite", path=str(db)),
                                  storage=dict(path=str(store)), encryption=encryption))
    assert res.failed
    assert message in res.msg
    assert not store.exists()


def test_check_mode_previews_the_encrypted_name_and_manifest(run_module, tmp_path, age_key):
    _, _, public = age_key
    db = tmp_path / "app.sqlite3"
    make_sqlite(db)
    res = run_module("dump", dict(job="app-db", source=dict(engine="sqlite", path=str(db)),
                                  storage=dict(path=str(tmp_path / "store")),
                                  encryption=dict(method="age", recipients=[public])), check_mode=True)
    assert res.rc == 0, res.describe()
    assert res.result["path"].endswith(".sqlite3.zst.age")
    assert res.result["manifest"]["encryption"] == {"method": "age", "recipients": [public]}
    assert not (tmp_path / "store").exists()


# ------------------------------------------------------------ the documented stock-tool procedure

def test_docs_decrypt_age_then_load_sqlite(run_module, tmp_path, age_key):
    identity_file, _, public = age_key
    db, store, _ = sqlite_backup(run_module, tmp_path, dict(method="age", recipients=[public]))
    target = tmp_path / "restored.sqlite3"
    env = dict(BACKUP_ROOT=store, PREFIX="prod", JOB="app-db", AGE_IDENTITY=identity_file, TARGET_PATH=target)
    run_doc(["fetch-local", "decrypt-age", "load-sqlite"], env, tmp_path)
    assert sqlite_dump(target) == sqlite_dump(db)


def test_docs_decrypt_gpg_symmetric_and_public_key(run_module, tmp_path, gpg_key):
    public, secret, _ = gpg_key
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    passphrase_file.chmod(0o600)
    for name, encryption, env in (
        ("sym", dict(method="gpg", passphrase=PASSPHRASE), dict(GPG_PASSPHRASE_FILE=passphrase_file)),
        ("pub", dict(method="gpg", recipient_files=[str(public)]), dict(GPG_SECRET_KEY=secret)),
    ):
        case = tmp_path / name
        case.mkdir()
        db, store, _ = sqlite_backup(run_module, case, encryption)
        target = case / "restored.sqlite3"
        run_doc(["fetch-local", "decrypt-gpg", "load-sqlite"],
                dict(env, BACKUP_ROOT=store, PREFIX="prod", JOB="app-db", TARGET_PATH=target), case)
        assert sqlite_dump(target) == sqlite_dump(db)


def test_a_job_key_given_for_an_unencrypted_backup_refuses_it_unless_allowed(run_module, tmp_path, age_key):
    """A plaintext backup where the job decrypts was not written by the job (issue 17: a planted
    `encryption: null`), or before encryption was turned on: allow_unencrypted says which."""
    _, identity, _ = age_key
    db, store, _ = sqlite_backup(run_module, tmp_path, None)
    target = tmp_path / "restored.sqlite3"
    args = dict(job="app-db", latest=True, storage=dict(path=store, prefix="prod"),
                target=dict(engine="sqlite", path=str(target)), decryption=dict(identity=identity))
    res = run_module("restore", args)
    assert res.failed and "is not encrypted, but decryption is configured" in res.msg, res.describe()
    assert not target.exists()
    res = run_module("restore", dict(args, allow_unencrypted=True))
    assert res.rc == 0, res.describe()
    assert sqlite_dump(target) == sqlite_dump(db)
    assert any("not encrypted" in w for w in res.warnings)


def test_upload_encrypts_and_splits_an_existing_file(run_module, tmp_path, age_key):
    identity_file, _, public = age_key
    src = tmp_path / "export.bin"
    data = os.urandom(3 * 1024 * 1024 + 123)
    src.write_bytes(data)
    store = tmp_path / "store"
    res = run_module("upload", dict(job="exports", src=str(src), storage=dict(path=str(store)), compression="none",
                                    encryption=dict(method="age", recipients=[public]), max_chunk_size="1M"))
    assert res.rc == 0, res.describe()
    record = res.result["manifest"]
    # No compression: the plaintext checksum is that of the file itself (the tap is the first stage).
    assert record["encryption"] == {"method": "age", "recipients": [public], "plaintext_size": len(data),
                                    "plaintext_sha256": hashlib.sha256(data).hexdigest()}
    assert record["artifact"].endswith(".bin.age") and len(record["chunks"]) == 4
    joined = b"".join((store / chunk["key"]).read_bytes() for chunk in record["chunks"])
    plain = subprocess.run(["age", "--decrypt", "--identity", str(identity_file)], input=joined,
                           capture_output=True, check=True).stdout
    assert plain == data


# ------------------------------------------------------------ age passphrase, plaintext checksum

def stock_age_with_passphrase(argv, passphrase, prompts, stdin_path, stdout_path):
    """Run the stock age CLI the way a person would: the passphrase typed at its terminal (a pty here)."""
    pid, master = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty; data files on stdin/stdout
        fd_in = os.open(stdin_path, os.O_RDONLY)
        fd_out = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd_in, 0)
        os.dup2(fd_out, 1)
        os.execvp(argv[0], argv)
    typed = 0
    output = b""
    while True:
        try:
            data = os.read(master, 1024)
        except OSError:
            break
        if not data:
            break
        output += data
        if output.count(b"passphrase:") > typed and typed < prompts:
            os.write(master, passphrase.encode() + b"\n")
            typed += 1
    _, status = os.waitpid(pid, 0)
    os.close(master)
    return os.waitstatus_to_exitcode(status), output


def test_age_passphrase_round_trip_and_stock_age_opens_it(run_module, tmp_path):
    # `type` is the alias of `method`, as in the examples.
    with CmdlineWatch(PASSPHRASE) as watch:
        db, store, dumped = sqlite_backup(run_module, tmp_path, dict(type="age", passphrase=PASSPHRASE))
        target = tmp_path / "restored.sqlite3"
        res = run_module("restore", dict(job="app-db", latest=True, storage=dict(path=store, prefix="prod"),
                                         target=dict(engine="sqlite", path=str(target)),
                                         decryption=dict(passphrase=PASSPHRASE)))
    assert res.rc == 0, res.describe()
    assert watch.samples > 3 and watch.seen == []
    assert sqlite_dump(target) == sqlite_dump(db)
    record = dumped["manifest"]
    assert without_plaintext(record["encryption"]) == {"method": "age", "mode": "passphrase"}
    artifact = os.path.join(store, record["artifact"])
    for text in (res.stdout, Path(store, dumped["manifest_key"]).read_text()):
        assert PASSPHRASE not in text

    # A person with the stock age CLI and the passphrase gets the plaintext the manifest describes.
    plain = tmp_path / "plain.zst"
    rc, _ = stock_age_with_passphrase(["age", "-d"], PASSPHRASE, 1, artifact, str(plain))
    assert rc == 0
    data = plain.read_bytes()
    assert hashlib.sha256(data).hexdigest() == record["encryption"]["plaintext_sha256"]
    assert len(data) == record["encryption"]["plaintext_size"]

    wrong = run_module("restore", dict(job="app-db", latest=True, storage=dict(path=store, prefix="prod"),
                                       target=dict(engine="sqlite", path=str(tmp_path / "wrong.sqlite3")),
                                       decryption=dict(passphrase="not the passphrase at all")))
    assert wrong.failed and "incorrect passphrase" in wrong.msg
    assert not (tmp_path / "wrong.sqlite3").exists()
    missing = run_module("verify", dict(manifest_key=dumped["manifest_key"], storage=dict(path=store, prefix="prod"),
                                        deep=True))
    assert missing.failed and "encrypted with an age passphrase; give decryption.passphrase" in missing.msg


def test_a_plaintext_checksum_that_does_not_match_fails_verify_and_restore(run_module, tmp_path, age_key):
    identity_file, _, public = age_key
    _, store, dumped = sqlite_backup(run_module, tmp_path, dict(method="age", recipients=[public]))
    manifest_path = Path(store, dumped["manifest_key"])
    record = json.loads(manifest_path.read_text())
    good = record["encryption"]["plaintext_sha256"]
    record["encryption"]["plaintext_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(record))
    decryption = dict(identity_files=[str(identity_file)])
    storage = dict(path=store, prefix="prod")
    res = run_module("verify", dict(manifest_key=dumped["manifest_key"], storage=storage, deep=True,
                                    decryption=decryption))
    assert res.failed
    assert "SHA-256 %s, but the manifest records plaintext_sha256 %s" % (good, "0" * 64) in res.describe()
    target = tmp_path / "restored.sqlite3"
    res = run_module("restore", dict(job="app-db", latest=True, storage=storage, decryption=decryption,
                                     target=dict(engine="sqlite", path=str(target))))
    assert res.failed and "plaintext_sha256" in res.msg
    assert not target.exists()
