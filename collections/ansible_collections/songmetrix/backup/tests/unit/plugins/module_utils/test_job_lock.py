import datetime
import json
import socket

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import job_lock
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.job_lock import (
    HostLock,
    LockHeld,
    LockSettings,
    StorageLock,
    is_stale,
    parse_stale_after,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_local import LocalStorage

UTC = datetime.timezone.utc


@pytest.mark.parametrize("text, seconds", [
    ("3600", 3600), (90, 90), ("90m", 5400), ("12h", 43200), ("1d6h", 108000), ("2h30m", 9000), ("1m", 60),
    (None, 43200),
])
def test_stale_after_durations(text, seconds):
    assert parse_stale_after(text) == seconds


@pytest.mark.parametrize("text", ["", "12 hours", "h", "-5m", "1w", "30s", "59"])
def test_bad_stale_after_is_refused(text):
    with pytest.raises(ValidationError, match="stale_after"):
        parse_stale_after(text)


def test_settings_validation():
    assert LockSettings(None).enabled is True and LockSettings({"enabled": False}).enabled is False
    with pytest.raises(ValidationError, match="lock.dir must be an absolute path"):
        LockSettings({"dir": "locks"})
    with pytest.raises(ValidationError, match="lock.wait"):
        LockSettings({"wait": -1})


def test_staleness_is_the_recorded_expiry():
    now = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert not is_stale({"expires": "2026-12-05T12:00:01Z"}, now)
    assert is_stale({"expires": "2026-12-05T12:00:00Z"}, now)
    assert is_stale({"expires": None}, now) and is_stale({"expires": "soon"}, now)


def test_host_lock_is_exclusive_and_names_its_holder(tmp_path):
    storage = LocalStorage(str(tmp_path / "storage"))
    first = HostLock(str(tmp_path / "locks"), storage, "prod", "app")
    first.acquire(0)
    second = HostLock(str(tmp_path / "locks"), storage, "prod", "app")
    with pytest.raises(LockHeld, match="already running on this host") as raised:
        second.acquire(0)
    assert raised.value.holder["host"] == socket.gethostname()
    # Another prefix is another job's lock.
    HostLock(str(tmp_path / "locks"), storage, "test", "app").acquire(0)
    first.release()
    second.acquire(0)
    second.release()


def test_storage_lock_refuses_a_live_holder_takes_over_a_stale_one_and_releases_only_its_own(tmp_path):
    storage = LocalStorage(str(tmp_path))
    holder = StorageLock(storage, "prod", "app", 3600)
    holder.acquire(0, host_locked=False)
    record = json.loads((tmp_path / "prod/app/lock.json").read_text())
    assert record["pid"] and record["owner"] and record["host"] == socket.gethostname()
    assert record["expires"] > record["acquired"]

    # A second run of another host (no host lock held) is refused, the lock left alone.
    with pytest.raises(LockHeld, match="locked by another run sharing its storage"):
        StorageLock(storage, "prod", "app", 3600).acquire(0, host_locked=False)
    # With the host lock held, a lock of this host is a leftover of a run that is gone.
    taker = StorageLock(storage, "prod", "app", 3600)
    taker.acquire(0, host_locked=True)
    assert "left by this host" in taker.warnings[0]

    holder.release()  # no longer its lock: warns, deletes nothing
    assert (tmp_path / "prod/app/lock.json").exists()
    assert "was taken over" in holder.warnings[-1]
    taker.release()
    assert not (tmp_path / "prod").exists()  # the lock and the folders it made are gone


def test_a_stale_lock_of_another_host_is_taken_over(tmp_path):
    storage = LocalStorage(str(tmp_path))
    storage.create_small("app/lock.json", json.dumps(
        {"job": "app", "host": "elsewhere", "pid": 7, "expires": "2026-01-01T00:00:00Z"}).encode())
    lock = StorageLock(storage, "", "app", 3600)
    lock.acquire(0, host_locked=False)
    assert "stale" in lock.warnings[0] and "elsewhere" in lock.warnings[0]
    assert job_lock.holder_of(storage, "", "app")["token"] == lock.token


def test_the_default_lock_folder_is_private_to_the_user_never_shared(monkeypatch):
    monkeypatch.setattr(job_lock.os, "geteuid", lambda: 0)
    assert job_lock.default_lock_dir() == "/run/songmetrix-backup" == LockSettings(None).directory
    monkeypatch.setattr(job_lock.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert LockSettings({}).directory == "/run/user/1000/songmetrix-backup"
    # No runtime folder of its own: a clear error naming lock.dir, no fallback into /tmp.
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    with pytest.raises(ValidationError, match=r"lock.dir is not set and this user \(uid 1000\) has no private"):
        LockSettings({})
    assert LockSettings({"dir": "/srv/locks"}).directory == "/srv/locks"
    assert LockSettings({"enabled": False}).directory is None


def test_a_storage_lock_of_another_user_on_this_host_is_not_taken_for_a_leftover(tmp_path, monkeypatch):
    """Host locks are per user: holding ours says nothing about another user's run on this host."""
    storage = LocalStorage(str(tmp_path))
    holder = StorageLock(storage, "", "app", 3600)
    holder.acquire(0, host_locked=True)
    monkeypatch.setattr(job_lock, "_user", lambda: "someone-else")
    with pytest.raises(LockHeld, match="locked by another run sharing its storage"):
        StorageLock(storage, "", "app", 3600).acquire(0, host_locked=True)
    holder.release()
