"""SFTP storage against a real OpenSSH sshd on 127.0.0.1 (tests/sshd.py): the storage contract,
host keys and logins, lost connections, and the dump module end to end with every engine."""

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import layout
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import StorageError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.specs import STORAGE_OPTIONS
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import make_storage
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_sftp import SftpStorage
from engine_helpers import decompress_cmd, decompress_to, stored_files
from tests.modrun import COLLECTIONS_DIR
from tests.sshd import SshServer

MIB = 1 << 20


def full(params):
    """A storage dict as the modules validate it: every option present, None when unset."""
    out = {name: None for name in STORAGE_OPTIONS}
    out.update(prefix="", retries=3, timeout=60)
    out.update(params)
    return out


@pytest.fixture
def storage(sftp_storage_params):
    store = SftpStorage(full(sftp_storage_params))
    yield store
    store.close()


def local(params):
    """The storage root as a local directory (the server runs here)."""
    return Path(params["path"])


def password_or_skip(server):
    if server.password is None:
        if os.environ.get("CI") == "true":
            pytest.fail("password login is not possible here (not root?); CI must test it")
        pytest.skip("password login needs root here (a dedicated test user)")
    return server.password


def ssh_keygen_fingerprint(public_line, tmp_path):
    path = tmp_path / ("key-%s.pub" % secrets.token_hex(3))
    path.write_text(public_line + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[1]


# --------------------------------------------------------------------------- writing


def test_commit_stores_the_bytes_mode_0600_and_leaves_no_temp_file(storage, sftp_storage_params, sftp_server):
    chunks = [os.urandom(MIB) for _ in range(5)] + [os.urandom(12345)]
    writer = storage.open_writer("job/2026/01/02/job-20260102T030405Z.sql.zst", {"job": "jöb"}, None)
    for chunk in chunks:
        writer.write(chunk)
    assert stored_files(local(sftp_storage_params)) == [
        "job/2026/01/02/" + os.path.basename(writer.temp_path)
    ]  # nothing under the final name before commit
    assert os.path.basename(writer.temp_path).startswith(".job-20260102T030405Z.sql.zst.partial-")
    writer.commit()
    root = local(sftp_storage_params)
    assert stored_files(root) == ["job/2026/01/02/job-20260102T030405Z.sql.zst"]
    final = root / "job/2026/01/02/job-20260102T030405Z.sql.zst"
    assert final.read_bytes() == b"".join(chunks)
    st = final.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.stat(sftp_server.home).st_uid  # written as the login user
    for directory in (root, root / "job", root / "job/2026/01/02"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750


def test_openssh_plain_rename_refuses_to_overwrite(sftp_server, sftp_storage_params):
    """The design rests on this: OpenSSH's sftp-server renames with link()+unlink()."""
    root = local(sftp_storage_params)
    client = paramiko.SSHClient()
    client.load_system_host_keys(sftp_server.known_hosts)
    client.connect(sftp_server.host, sftp_server.port, sftp_server.user, key_filename=sftp_server.private_key,
                   look_for_keys=False, allow_agent=False)
    try:
        sftp = client.open_sftp()
        sftp.mkdir(str(root.parent))
        sftp.mkdir(str(root))
        for name, data in (("old", b"old"), ("new", b"new")):
            with sftp.open(str(root / name), "w") as handle:
                handle.write(data)
        with pytest.raises(IOError):
            sftp.rename(str(root / "new"), str(root / "old"))
        assert (root / "old").read_bytes() == b"old" and (root / "new").read_bytes() == b"new"
    finally:
        client.close()


def test_commit_never_overwrites(storage, sftp_storage_params):
    storage.put_small("a/b.json", b"first")
    writer = storage.open_writer("a/b.json")
    writer.write(b"second")
    with pytest.raises(StorageError, match="already exists; a stored backup is never overwritten"):
        writer.commit()
    assert stored_files(local(sftp_storage_params)) == ["a/b.json"]
    assert (local(sftp_storage_params) / "a/b.json").read_bytes() == b"first"
    with pytest.raises(StorageError, match="never overwritten"):
        storage.put_small("a/b.json", b"third")
    assert stored_files(local(sftp_storage_params)) == ["a/b.json"]


def test_abort_leaves_nothing(storage, sftp_storage_params):
    writer = storage.open_writer("x/y/z.tar.gz")
    writer.write(os.urandom(3 * MIB))
    writer.abort()
    writer.abort()  # twice is fine
    assert stored_files(local(sftp_storage_params)) == []
    assert not storage.exists("x/y/z.tar.gz")
    committed = storage.open_writer("x/y/done")
    committed.write(b"ok")
    committed.commit()
    committed.abort()  # after commit: nothing to undo
    assert stored_files(local(sftp_storage_params)) == ["x/y/done"]


def test_connection_killed_mid_transfer(storage, sftp_storage_params, sftp_server):
    writer = storage.open_writer("job/big.bin")
    block = os.urandom(MIB)
    writer.write(block)
    assert sftp_server.drop_sessions() > 0
    with pytest.raises(StorageError) as caught:
        for _ in range(256):  # the loss shows within the SSH window; never more than this
            writer.write(block)
    message = str(caught.value)
    assert "connection to the SFTP server %s:%d was lost" % (sftp_server.host, sftp_server.port) in message
    assert "sftp://%s@%s:%d" % (sftp_server.user, sftp_server.host, sftp_server.port) in message
    writer.abort()  # reconnects to remove the temp file
    assert stored_files(local(sftp_storage_params)) == []
    # The storage carries on with a new connection.
    storage.put_small("job/after.json", b"{}")
    assert storage.get_small("job/after.json") == b"{}"



def test_a_write_the_server_refuses_fails_and_leaves_nothing():
    """Pipelined writes: every answer is checked, a refused write (EFBIG here, like a full disk) fails."""
    with SshServer(file_size_limit=MIB) as server:
        params = server.storage_params(server.fresh_dir())
        store = SftpStorage(full(params))
        try:
            store.put_small("job/small.bin", os.urandom(MIB // 2))
            writer = store.open_writer("job/full.bin")
            with pytest.raises(StorageError) as caught:
                for _ in range(4):
                    writer.write(os.urandom(MIB))
                writer.commit()
            message = str(caught.value)
            assert "writing sftp://%s@%s:%d" % (server.user, server.host, server.port) in message
            assert ".full.bin.partial-" in message and "failed: Failure" in message
            writer.abort()
            assert stored_files(local(params)) == ["job/small.bin"]
        finally:
            store.close()


def test_a_connection_lost_between_requests_is_made_again(storage, sftp_storage_params, sftp_server):
    storage.put_small("k/one", b"1")
    sftp_server.drop_sessions()
    assert storage.exists("k/one")
    sftp_server.drop_sessions()
    storage.put_small("k/two", b"2")
    assert [info.key for info in storage.list_keys("k/")] == ["k/one", "k/two"]


# --------------------------------------------------------------------------- reading, listing, deleting


def test_reader_get_small_exists_delete(storage, sftp_storage_params):
    data = os.urandom(3 * MIB + 123)
    storage.put_small("r/data.bin", data)
    reader = storage.open_reader("r/data.bin")
    assert reader.size == len(data)
    parts = [reader.read(10), reader.read(100000)]
    while True:
        part = reader.read(MIB)
        if not part:
            break
        assert len(part) <= MIB
        parts.append(part)
    reader.close()
    assert b"".join(parts) == data
    assert storage.get_small("r/data.bin") == data
    assert storage.exists("r/data.bin") and not storage.exists("r/missing")
    storage.delete("r/data.bin")
    storage.delete("r/data.bin")  # missing is fine
    assert not storage.exists("r/data.bin")
    with pytest.raises(StorageError, match="no such file"):
        storage.open_reader("r/data.bin")
    storage.put_small("r/empty", b"")
    assert storage.get_small("r/empty") == b""


def test_list_keys_walks_recursively(storage, sftp_storage_params):
    keys = ["p/job/2026/01/01/a.zst", "p/job/2026/01/01/a.manifest.json", "p/job/2026/02/03/b.zst",
            "p/job/manual/2026/05/05/c.zst", "p/other/x", "p/jobless/y", "top"]
    for key in keys:
        storage.put_small(key, key.encode())
    root = local(sftp_storage_params)
    (root / "p/job/2026/01/01/.d.zst.partial-1-abcd").write_bytes(b"partial")
    (root / "p/job/2026/01/01/link").symlink_to("a.zst")
    before = time.time()
    listed = list(storage.list_keys(""))
    assert [info.key for info in listed] == sorted(keys + ["p/job/2026/01/01/.d.zst.partial-1-abcd"])
    sizes = {info.key: info.size for info in listed}
    assert sizes["p/other/x"] == len("p/other/x")
    assert all(abs(info.modified - before) < 120 for info in listed)
    assert [i.key for i in storage.list_keys("p/job/")] == sorted(
        [k for k in keys if k.startswith("p/job/")] + ["p/job/2026/01/01/.d.zst.partial-1-abcd"])
    assert [i.key for i in storage.list_keys("p/job")] == sorted(
        [k for k in keys if k.startswith("p/job")] + ["p/job/2026/01/01/.d.zst.partial-1-abcd"])
    assert [i.key for i in storage.list_keys("p/job/2026/02")] == ["p/job/2026/02/03/b.zst"]
    assert list(storage.list_keys("nothing/here/")) == []


def test_keys_cannot_escape_the_root(storage):
    for key in ("../x", "a/../../x", "/etc/passwd", "a//b", ""):
        with pytest.raises(ValidationError):
            storage.exists(key)


# --------------------------------------------------------------------------- preflight, paths


def test_preflight_check_mode_creates_nothing(sftp_storage_params):
    root = local(sftp_storage_params)
    store = SftpStorage(full(sftp_storage_params))
    try:
        store.preflight(create=False)
        assert not root.exists() and not root.parent.exists()
        store.preflight(create=True)
        assert root.is_dir() and stored_files(root) == []
        assert stat.S_IMODE(root.stat().st_mode) == 0o750
    finally:
        store.close()


def test_path_that_is_a_file_is_refused(sftp_storage_params, sftp_server):
    root = local(sftp_storage_params)
    root.parent.mkdir()
    root.write_text("not a directory")
    store = SftpStorage(full(sftp_storage_params))
    try:
        with pytest.raises(ValidationError, match="is not a directory"):
            store.preflight(create=False)
        with pytest.raises(ValidationError, match="is not a directory"):
            store.preflight(create=True)
    finally:
        store.close()


def test_unwritable_path_gives_permission_denied(sftp_server):
    if sftp_server.user == "root":
        pytest.skip("root may write anywhere")
    path = str(sftp_server.tmp / ("locked-%s" % secrets.token_hex(3)) / "backups")  # tmp is root's, 0711
    store = SftpStorage(full(sftp_server.storage_params(path)))
    try:
        store.preflight(create=False)  # the nearest existing parent is a directory: fine without writing
        with pytest.raises(ValidationError) as caught:
            store.preflight(create=True)
        assert "permission denied" in str(caught.value) and path in str(caught.value)
    finally:
        store.close()


def test_relative_path_is_under_the_login_directory(sftp_server):
    name = "rel-%s" % secrets.token_hex(4)
    store = SftpStorage(full(sftp_server.storage_params(name + "/backups")))
    try:
        store.preflight(create=True)
        store.put_small("k.json", b"{}")
        assert (sftp_server.home / name / "backups" / "k.json").read_bytes() == b"{}"
        assert store.location("k.json") == "sftp://%s@%s:%d/~/%s/backups/k.json" % (
            sftp_server.user, sftp_server.host, sftp_server.port, name)
        tilde = SftpStorage(full(sftp_server.storage_params("~/" + name + "/backups")))
        assert tilde.get_small("k.json") == b"{}"
        tilde.close()
    finally:
        store.close()
        shutil.rmtree(sftp_server.home / name, ignore_errors=True)


def test_location_and_describe_hold_no_secret(sftp_server, sftp_storage_params):
    password = sftp_server.password or "pw-not-used"
    params = full(dict(sftp_storage_params, private_key=sftp_server.encrypted_key, password=password,
                       private_key_passphrase=sftp_server.encrypted_key_passphrase))
    store = make_storage(params)
    assert isinstance(store, SftpStorage)
    assert store.location("j/a.zst") == "sftp://%s@%s:%d%s/j/a.zst" % (
        sftp_server.user, sftp_server.host, sftp_server.port, sftp_storage_params["path"])
    base = "sftp://%s@%s:%d%s" % (sftp_server.user, sftp_server.host, sftp_server.port, sftp_storage_params["path"])
    assert store.location("") == base and store.location("prod/job/") == base + "/prod/job/"
    assert SftpStorage(full(dict(params, path="/"))).location("a/b") == "sftp://%s@%s:%d/a/b" % (
        sftp_server.user, sftp_server.host, sftp_server.port)
    assert SftpStorage(full(dict(params, path="~"))).location("") == "sftp://%s@%s:%d/~" % (
        sftp_server.user, sftp_server.host, sftp_server.port)
    text = json.dumps(store.describe())
    assert password not in text and sftp_server.encrypted_key_passphrase not in text
    assert store.describe()["type"] == "sftp"


# --------------------------------------------------------------------------- logins


def test_password_login(sftp_server, sftp_storage_params):
    password = password_or_skip(sftp_server)
    params = full(dict(sftp_storage_params, private_key=None, password=password))
    store = SftpStorage(params)
    try:
        store.preflight(create=True)
        store.put_small("pw.json", b"ok")
        assert (local(sftp_storage_params) / "pw.json").read_bytes() == b"ok"
    finally:
        store.close()


def test_wrong_password_fails_at_once_without_the_password(sftp_server, sftp_storage_params):
    password_or_skip(sftp_server)
    wrong = "Wr0ng-" + secrets.token_urlsafe(8)
    store = SftpStorage(full(dict(sftp_storage_params, private_key=None, password=wrong, retries=5)))
    started = time.monotonic()
    with pytest.raises(ValidationError) as caught:
        store.preflight(create=True)
    assert time.monotonic() - started < 5  # not retried (5 retries would back off for a minute)
    message = str(caught.value)
    assert "SFTP authentication as %s to %s:%d failed" % (sftp_server.user, sftp_server.host, sftp_server.port) \
        in message
    assert wrong not in message and "password" in message
    assert not local(sftp_storage_params).exists()


def test_unknown_key_is_not_offered_from_agent_or_home(sftp_server, sftp_storage_params, tmp_path):
    """With a key configured, only that key is tried (no agent, no ~/.ssh/id_*)."""
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    store = SftpStorage(full(dict(sftp_storage_params, private_key=str(other))))
    with pytest.raises(ValidationError, match="SFTP authentication as .* failed .*tried private key"):
        store.preflight(create=False)


def test_encrypted_private_key(sftp_server, sftp_storage_params):
    base = dict(sftp_storage_params, private_key=sftp_server.encrypted_key)
    with pytest.raises(ValidationError, match="is encrypted: set storage.private_key_passphrase"):
        SftpStorage(full(base)).preflight(create=False)
    wrong = "not-the-passphrase"
    with pytest.raises(ValidationError) as caught:
        SftpStorage(full(dict(base, private_key_passphrase=wrong))).preflight(create=False)
    assert "passphrase is wrong" in str(caught.value) and wrong not in str(caught.value)
    store = SftpStorage(full(dict(base, private_key_passphrase=sftp_server.encrypted_key_passphrase)))
    try:
        store.preflight(create=True)
    finally:
        store.close()
    with pytest.raises(ValidationError, match="cannot read storage.private_key"):
        SftpStorage(full(dict(base, private_key="/nonexistent/key"))).preflight(create=False)


# --------------------------------------------------------------------------- host keys


def test_unknown_host_key_is_refused_by_default(sftp_server, sftp_storage_params, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    store = SftpStorage(full(dict(sftp_storage_params, known_hosts=str(known_hosts), retries=5)))
    started = time.monotonic()
    with pytest.raises(ValidationError) as caught:
        store.preflight(create=True)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "host key of SFTP server %s:%d is unknown" % (sftp_server.host, sftp_server.port) in message
    assert ssh_keygen_fingerprint(sftp_server.host_public_key, tmp_path) in message
    assert known_hosts.read_text() == ""  # nothing learned
    assert not local(sftp_storage_params).exists()
    missing = tmp_path / "no" / "known_hosts"
    with pytest.raises(ValidationError, match=r"is unknown .*\(missing\)"):
        SftpStorage(full(dict(sftp_storage_params, known_hosts=str(missing)))).preflight(create=False)
    assert not missing.exists()


def test_changed_host_key_is_refused(sftp_server, sftp_storage_params, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("[%s]:%d %s\n" % (sftp_server.host, sftp_server.port, sftp_server.other_host_public_key))
    store = SftpStorage(full(dict(sftp_storage_params, known_hosts=str(known_hosts))))
    with pytest.raises(ValidationError) as caught:
        store.preflight(create=True)
    message = str(caught.value)
    assert "host key of SFTP server %s:%d has changed" % (sftp_server.host, sftp_server.port) in message
    assert ssh_keygen_fingerprint(sftp_server.host_public_key, tmp_path) in message
    assert ssh_keygen_fingerprint(sftp_server.other_host_public_key, tmp_path) in message
    assert not local(sftp_storage_params).exists()


def test_hashed_known_hosts_entries_work(sftp_server, sftp_storage_params, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sftp_server.host_key_line + "\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known_hosts)], check=True, capture_output=True)
    assert sftp_server.host not in known_hosts.read_text()
    store = SftpStorage(full(dict(sftp_storage_params, known_hosts=str(known_hosts))))
    try:
        store.preflight(create=True)
    finally:
        store.close()


def test_inline_host_key(sftp_server, sftp_storage_params, tmp_path):
    nowhere = str(tmp_path / "absent_known_hosts")
    good = SftpStorage(full(dict(sftp_storage_params, known_hosts=nowhere, host_key=sftp_server.host_public_key)))
    try:
        good.preflight(create=True)
    finally:
        good.close()
    # A line as ssh-keyscan prints it (host names first) is accepted too.
    keyscan_line = SftpStorage(full(dict(sftp_storage_params, host_key=sftp_server.host_key_line)))
    keyscan_line.preflight(create=False)
    keyscan_line.close()
    bad = SftpStorage(full(dict(sftp_storage_params, host_key=sftp_server.other_host_public_key)))
    with pytest.raises(ValidationError, match="has changed: .* storage.host_key expects"):
        bad.preflight(create=False)
    with pytest.raises(ValidationError, match="storage.host_key must be a public key"):
        SftpStorage(full(dict(sftp_storage_params, host_key="ssh-ed25519 not-base64!")))
    assert not os.path.exists(nowhere)


def test_host_key_checking_off_accepts_and_writes_nothing(sftp_server, sftp_storage_params, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    store = SftpStorage(full(dict(sftp_storage_params, known_hosts=str(known_hosts), host_key_checking=False)))
    try:
        store.preflight(create=True)
        store.put_small("k", b"v")
    finally:
        store.close()
    assert not known_hosts.exists()


# --------------------------------------------------------------------------- unreachable, missing library


def test_connection_refused_is_retried_then_reported(sftp_server, sftp_storage_params):
    sftp_server.stop()
    try:
        store = SftpStorage(full(dict(sftp_storage_params, retries=2)))
        started = time.monotonic()
        with pytest.raises(StorageError) as caught:
            store.preflight(create=True)
        elapsed = time.monotonic() - started
    finally:
        sftp_server.start()
    assert "cannot connect to SFTP server %s:%d: connection refused (3 attempts)" % (
        sftp_server.host, sftp_server.port) in str(caught.value)
    assert 1.4 <= elapsed < 10  # backoff 1 s then 2 s, each half random
    assert not isinstance(caught.value, ValidationError)  # transient: a spool may keep the backup


def test_missing_paramiko_is_named():
    code = (
        "import sys; sys.modules['paramiko'] = None\n"
        "from ansible_collections.songmetrix.backup.plugins.module_utils import storage_sftp\n"
        "assert not storage_sftp.HAS_PARAMIKO\n"
        "try:\n"
        "    storage_sftp.SftpStorage({'host': 'h', 'path': '/p'})\n"
        "except storage_sftp.ValidationError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(COLLECTIONS_DIR))).stdout
    assert "python3-paramiko" in out and "pip install paramiko" in out


# --------------------------------------------------------------------------- dump module end to end


def fetch(sftp_server, params, key, target):
    """Read a stored object back with the stock OpenSSH sftp client."""
    sftp_server.download("%s/%s" % (params["path"], key), target)
    return target


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def check_stored_backup(sftp_server, params, result, tmp_path, secrets_=()):
    """Artifact and manifest fetched with `sftp`: the manifest is the returned one, the sha256 matches."""
    assert result["path"] == "sftp://%s@%s:%d%s/%s" % (
        sftp_server.user, sftp_server.host, sftp_server.port, params["path"], result["artifact"])
    manifest_copy = fetch(sftp_server, params, result["manifest_key"], tmp_path / "manifest.json")
    manifest = json.loads(manifest_copy.read_text())
    assert manifest == result["manifest"]
    artifact = fetch(sftp_server, params, result["artifact"], tmp_path / os.path.basename(result["artifact"]))
    assert sha256_file(artifact) == manifest["sha256"]
    assert os.path.getsize(artifact) == manifest["stored_size"]
    names = stored_files(local(params))
    attempt = layout.attempt_key(params.get("prefix") or "", manifest["job"])
    assert sorted(names) == sorted([result["artifact"], result["manifest_key"], attempt])  # no temp files left
    assert json.loads((local(params) / attempt).read_text())["status"] == "ok"
    for name in names:
        assert stat.S_IMODE((local(params) / name).stat().st_mode) == 0o600
    return str(artifact), manifest


def assert_no_secret(res, *values):
    for value in values:
        if value:
            assert value not in res.stdout and value not in res.stderr


def test_dump_sqlite_to_sftp_with_password(run_module, sftp_server, sftp_storage_params, tmp_path):
    password = password_or_skip(sftp_server)
    db = tmp_path / "app.sqlite3"
    conn = sqlite3.connect(str(db))
    conn.execute("CREATE TABLE t (i INTEGER, s TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "ünï %d" % i) for i in range(5000)])
    conn.commit()
    conn.close()
    params = dict(sftp_storage_params, private_key=None, password=password, prefix="site-a")
    res = run_module("dump", dict(job="app-db", source=dict(engine="sqlite", path=str(db)), storage=params))
    assert res.rc == 0, res.describe()
    assert res.result["artifact"].startswith("site-a/app-db/")
    artifact, manifest = check_stored_backup(sftp_server, params, res.result, tmp_path)
    assert manifest["engine"] == "sqlite"
    restored = decompress_to(artifact, str(tmp_path / "restored.sqlite3"))
    assert sqlite3.connect(restored).execute("SELECT count(*), sum(i) FROM t").fetchone() == (5000, sum(range(5000)))
    assert_no_secret(res, password)


def test_dump_files_to_sftp(run_module, sftp_server, sftp_storage_params, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "blob.bin").write_bytes(os.urandom(3 * MIB))
    (src / "notes.txt").write_text("hello\n")
    res = run_module("dump", dict(job="files", source=dict(engine="files", path=str(src)), compression="gzip",
                                  storage=sftp_storage_params))
    assert res.rc == 0, res.describe()
    artifact, _ = check_stored_backup(sftp_server, sftp_storage_params, res.result, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    unpack = subprocess.Popen(decompress_cmd(artifact), stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(out)], stdin=unpack.stdout, check=True)
    unpack.stdout.close()
    assert unpack.wait() == 0
    assert (out / "sub" / "blob.bin").read_bytes() == (src / "sub" / "blob.bin").read_bytes()


def test_dump_postgresql_to_sftp(run_module, sftp_server, sftp_storage_params, pg_server, pg_database, tmp_path):
    pg_server.psql("CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g",
                   dbname=pg_database)
    source = dict(engine="postgresql", host=pg_server.host, port=pg_server.port, user=pg_server.user,
                  password=pg_server.password, database=pg_database)
    res = run_module("dump", dict(job="pg", source=source, storage=sftp_storage_params))
    assert res.rc == 0, res.describe()
    artifact, manifest = check_stored_backup(sftp_server, sftp_storage_params, res.result, tmp_path)
    assert manifest["engine"] == "postgresql"
    dump = decompress_to(artifact, str(tmp_path / "db.dump"))
    listing = subprocess.run([str(pg_server.tool("pg_restore")), "--list", dump], check=True,
                             capture_output=True, text=True).stdout
    assert "TABLE DATA public items" in listing
    assert_no_secret(res, pg_server.password)


def test_dump_mariadb_to_sftp(run_module, sftp_server, sftp_storage_params, mariadb_server, mariadb_database,
                              tmp_path):
    mariadb_server.sql("CREATE TABLE shop (id INT PRIMARY KEY, name VARCHAR(50)); "
                       "INSERT INTO shop VALUES (1, 'Zoë'), (2, 'O''Brien')", database=mariadb_database)
    source = dict(engine="mariadb", host=mariadb_server.host, port=mariadb_server.port, user=mariadb_server.user,
                  password=mariadb_server.password, database=mariadb_database)
    res = run_module("dump", dict(job="shop", source=source, storage=sftp_storage_params, compression="lz4"))
    assert res.rc == 0, res.describe()
    artifact, _ = check_stored_backup(sftp_server, sftp_storage_params, res.result, tmp_path)
    sql = subprocess.run(decompress_cmd(artifact), check=True, capture_output=True).stdout.decode("utf-8")
    assert "CREATE TABLE `shop`" in sql and "Zoë" in sql
    assert_no_secret(res, mariadb_server.password)


def test_dump_check_mode_writes_nothing_to_sftp(run_module, sftp_storage_params, tmp_path):
    db = tmp_path / "app.sqlite3"
    sqlite3.connect(str(db)).execute("CREATE TABLE t (i INTEGER)").connection.commit()
    res = run_module("dump", dict(job="app", source=dict(engine="sqlite", path=str(db)), storage=sftp_storage_params),
                     check_mode=True)
    assert res.rc == 0, res.describe()
    assert not local(sftp_storage_params).parent.exists()


def test_dump_with_wrong_sftp_password_fails_clearly(run_module, sftp_server, sftp_storage_params, tmp_path):
    password_or_skip(sftp_server)
    wrong = "Wr0ng-" + secrets.token_urlsafe(8)
    db = tmp_path / "app.sqlite3"
    sqlite3.connect(str(db)).execute("CREATE TABLE t (i INTEGER)").connection.commit()
    params = dict(sftp_storage_params, private_key=None, password=wrong)
    res = run_module("dump", dict(job="app", source=dict(engine="sqlite", path=str(db)), storage=params))
    assert res.rc != 0
    assert "SFTP authentication as %s to %s:%d failed" % (sftp_server.user, sftp_server.host, sftp_server.port) \
        in res.msg
    assert_no_secret(res, wrong)


def test_dump_with_unreachable_sftp_keeps_the_backup_in_the_spool(run_module, sftp_server, sftp_storage_params,
                                                                   spool_dir, tmp_path):
    db = tmp_path / "app.sqlite3"
    sqlite3.connect(str(db)).execute("CREATE TABLE t (i INTEGER)").connection.commit()
    args = dict(job="app", source=dict(engine="sqlite", path=str(db)), spool_dir=str(spool_dir),
                storage=dict(sftp_storage_params, retries=0))
    sftp_server.stop()
    try:
        res = run_module("dump", args)
    finally:
        sftp_server.start()
    assert res.rc != 0
    assert "cannot connect to SFTP server" in res.msg and "spool" in res.msg
    spooled = stored_files(spool_dir)
    assert any(name.endswith(".manifest.json") for name in spooled), spooled
    time.sleep(1.1)  # the next backup gets its own second
    again = run_module("dump", args)
    assert again.rc == 0, again.describe()
    manifests = [n for n in stored_files(local(sftp_storage_params)) if n.endswith(".manifest.json")]
    assert len(manifests) == 2  # the spooled backup went up too
    assert not [n for n in stored_files(spool_dir) if n.endswith(".manifest.json")]



def test_backup_info_and_verify_read_sftp(run_module, sftp_storage_params, tmp_path):
    db = tmp_path / "app.sqlite3"
    conn = sqlite3.connect(str(db))
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [(os.urandom(200).hex(),) for _ in range(3000)])
    conn.commit()
    conn.close()
    storage = dict(sftp_storage_params, prefix="prod")
    res = run_module("dump", dict(job="app", source=dict(engine="sqlite", path=str(db)), storage=storage))
    assert res.rc == 0, res.describe()
    info = run_module("backup_info", dict(job="app", storage=storage))
    assert info.rc == 0 and info.result["count"] == 1, info.describe()
    verify = run_module("verify", dict(job="app", storage=storage, deep=True))
    assert verify.rc == 0 and verify.result["verified"] == 1, verify.describe()
    assert verify.result["backups"][0]["checked_bytes"] == res.result["manifest"]["stored_size"]
    artifact = local(sftp_storage_params) / res.result["artifact"]
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    verify = run_module("verify", dict(job="app", storage=storage))
    assert verify.failed and "the manifest says %s" % res.result["manifest"]["sha256"] in \
        verify.result["backups"][0]["problem"], verify.describe()
