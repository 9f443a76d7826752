"""Concurrency: two runs of one job at once on one host (the host lock, flock), on two hosts that
share a storage prefix (the lock object in the storage), locks left by killed runs, and a prune
that runs while a backup uploads.

The slow backup is real: a directory of incompressible data streamed to the S3 endpoint through
the fault proxy, which holds every part for a while. The "other host" is a real one as far as
the module can tell: its own UTS namespace with another hostname (unshare), and its own lock dir.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import sys
import time

import pytest

from fault_helpers import last_attempt, seed_history
from tests.integration.engine_helpers import start_module

from ansible_collections.songmetrix.backup.plugins.module_utils.storage import opened_storage

JOB = "shared-job"
PART_DELAY = 1.0  # seconds the proxy holds each 8 MiB part: five parts, five seconds of upload at least


@pytest.fixture
def slow_source(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "blob.bin").write_bytes(os.urandom(34 * 1024 * 1024))
    return dict(engine="files", path=str(data))


@pytest.fixture
def slow_s3(s3_bucket, s3_proxy, s3_storage_params):
    s3_proxy.delay("UploadPart", PART_DELAY)
    return s3_storage_params(s3_bucket, endpoint_url=s3_proxy.endpoint_url, prefix="conc", part_size=8,
                             max_concurrency=1)


def dump_args(source, storage, lock_dir, **lock):
    return dict(job=JOB, source=source, storage=storage, compression="none", lock=dict(dir=str(lock_dir), **lock))


def lock_key(storage):
    return "%s/%s/lock.json" % (storage["prefix"], JOB)


def lock_object(storage):
    with opened_storage(storage) as opened:
        if not opened.exists(lock_key(storage)):
            return None
        return json.loads(opened.get_small(lock_key(storage)))


def wait_for_lock(proc, storage, timeout=60):
    """Until the running module holds the job's storage lock (it holds the host lock before that)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = lock_object(storage)
        if holder and holder.get("pid") == proc.pid:
            return holder
        if proc.poll() is not None:
            raise AssertionError("the first run ended early: %r" % (proc.communicate(),))
        time.sleep(0.05)
    raise AssertionError("the first run never took the lock")


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    result = json.loads(out.decode().strip().splitlines()[-1])
    return proc.returncode, result, err


def backups(run_module, storage):
    info = run_module("backup_info", dict(job=JOB, storage=storage))
    assert info.rc == 0, info.describe()
    return info.result


@pytest.fixture
def other_host_python(tmp_path):
    """A python that runs in a UTS namespace of its own, named host-b: another host, for the module."""
    wrapper = tmp_path / "python-on-host-b"
    wrapper.write_text("#!/bin/sh\nexec unshare --uts -- /bin/sh -c 'hostname host-b && exec \"$@\"' sh %s \"$@\"\n"
                       % sys.executable)
    wrapper.chmod(0o755)
    return str(wrapper)


def test_a_second_run_on_the_same_host_stops_naming_the_first_then_waits_its_turn(
        run_module, tmp_path, slow_source, slow_s3):
    seed_history(slow_s3, JOB, count=2, prefix="conc")
    before = last_attempt(slow_s3, JOB)
    first = start_module("dump", dump_args(slow_source, slow_s3, tmp_path / "locks"), tmp_path)
    holder = wait_for_lock(first, slow_s3)
    assert holder["host"] == socket.gethostname() and holder["operation"] == "backup"

    second = run_module("dump", dump_args(slow_source, slow_s3, tmp_path / "locks"))
    assert second.rc != 0
    assert "already running on this host" in second.msg and "pid %d" % first.pid in second.msg, second.msg
    assert second.result["locked"]["pid"] == first.pid
    # The refused run is no failed attempt: the record is what it was, and prune is not stopped by it.
    assert last_attempt(slow_s3, JOB) == before

    waiting = run_module("dump", dump_args(slow_source, slow_s3, tmp_path / "locks", wait=120))
    rc, result, err = finish(first)
    assert rc == 0, (result, err)
    assert waiting.rc == 0, waiting.describe()
    assert waiting.result["manifest"]["started"] >= result["manifest"]["finished"]
    listing = backups(run_module, slow_s3)
    assert listing["count"] == 4 and listing["incomplete"] == []
    assert lock_object(slow_s3) is None


def test_a_run_on_another_host_sharing_the_prefix_stops_naming_the_holder(
        run_module, tmp_path, slow_source, slow_s3, other_host_python, s3_server, s3_bucket):
    first = start_module("dump", dump_args(slow_source, slow_s3, tmp_path / "locks-a"), tmp_path)
    wait_for_lock(first, slow_s3)
    other = run_module("dump", dump_args(slow_source, slow_s3, tmp_path / "locks-b"), python=other_host_python)
    assert other.rc != 0
    assert "locked by another run sharing its storage" in other.msg, other.describe()
    assert "on host %s (pid %d" % (socket.gethostname(), first.pid) in other.msg, other.msg
    assert other.result["locked"]["host"] == socket.gethostname()
    rc, result, err = finish(first)
    assert rc == 0, (result, err)
    assert s3_server.pending_uploads(s3_bucket) == []
    # Free again: host-b now backs the job up, and its manifest says so.
    again = run_module("dump", dump_args(slow_source, slow_s3, tmp_path / "locks-b"), python=other_host_python)
    assert again.rc == 0, again.describe()
    assert again.result["manifest"]["host"] == "host-b"
    assert backups(run_module, slow_s3)["count"] == 2 and lock_object(slow_s3) is None


def test_a_run_killed_mid_upload_leaves_a_lock_this_host_takes_over_at_once(
        run_module, tmp_path, slow_source, slow_s3, other_host_python):
    first = start_module("dump", dump_args(slow_source, slow_s3, tmp_path / "locks"), tmp_path)
    wait_for_lock(first, slow_s3)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    left = lock_object(slow_s3)
    assert left and left["pid"] == first.pid

    # Another host cannot know the run is gone: it waits for the lock to go stale.
    elsewhere = run_module("dump", dump_args(slow_source, slow_s3, tmp_path / "locks-b"), python=other_host_python)
    assert elsewhere.rc != 0 and "locked by another run" in elsewhere.msg, elsewhere.describe()

    # This host can: the kernel freed the host lock with the killed process, so the lock is a leftover.
    rerun = run_module("dump", dump_args(slow_source, slow_s3, tmp_path / "locks"))
    assert rerun.rc == 0, rerun.describe()
    assert any("took over the lock" in w and "left by this host" in w for w in rerun.warnings)
    assert lock_object(slow_s3) is None
    assert backups(run_module, slow_s3)["count"] == 1


def foreign_lock(expires_in):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return {"format_version": 1, "job": JOB, "operation": "backup", "owner": "backup", "host": "db-old",
            "pid": 4242, "token": "f" * 32, "acquired": (now - datetime.timedelta(hours=13)).strftime(stamp),
            "expires": (now + expires_in).strftime(stamp)}


def put_lock(storage, record):
    with opened_storage(storage) as opened:
        opened.replace_small(lock_key(storage), json.dumps(record).encode())


@pytest.fixture(params=["local", "s3", "sftp"])
def any_storage(request, tmp_path):
    if request.param == "local":
        return dict(type="local", path=str(tmp_path / "storage"), prefix="conc")
    if request.param == "s3":
        return request.getfixturevalue("s3_storage_params")(request.getfixturevalue("s3_bucket"), prefix="conc")
    return dict(request.getfixturevalue("sftp_storage_params"), prefix="conc")


def test_a_live_lock_of_another_host_stops_the_run_and_a_stale_one_is_taken_over(
        run_module, tmp_path, any_storage):
    data = tmp_path / "small"
    data.mkdir()
    (data / "a.txt").write_text("hello\n")
    source = dict(engine="files", path=str(data))
    history = seed_history(any_storage, JOB, count=2, prefix="conc")
    put_lock(any_storage, foreign_lock(datetime.timedelta(hours=1)))

    refused = run_module("dump", dump_args(source, any_storage, tmp_path / "locks"))
    assert refused.rc != 0
    assert "locked by another run sharing its storage: backup of job %s on host db-old (pid 4242" % JOB \
        in refused.msg, refused.msg
    assert lock_object(any_storage)["host"] == "db-old"  # never removed by the run it stopped

    check = run_module("dump", dump_args(source, any_storage, tmp_path / "locks"), check_mode=True)
    assert check.rc == 0 and any("locked now" in w and "db-old" in w for w in check.warnings), check.describe()

    prune = run_module("prune", dict(job=JOB, storage=any_storage, retention=dict(keep_last=1), force=True))
    assert prune.rc == 0, prune.describe()
    assert prune.result["deleted"] == [] and "is locked by backup of job %s on host db-old" % JOB \
        in prune.result["stopped"], prune.result
    assert backups(run_module, any_storage)["count"] == len(history)

    put_lock(any_storage, foreign_lock(datetime.timedelta(minutes=-5)))
    taken = run_module("dump", dump_args(source, any_storage, tmp_path / "locks"))
    assert taken.rc == 0, taken.describe()
    assert any("took over the lock" in w and "db-old" in w and "stale" in w for w in taken.warnings)
    assert lock_object(any_storage) is None


def test_prune_during_an_upload_stops_and_never_touches_the_backup_in_progress(
        run_module, tmp_path, slow_source, slow_s3, s3_server, s3_bucket):
    history = seed_history(slow_s3, JOB, count=3, prefix="conc")
    first = start_module("dump", dump_args(slow_source, slow_s3, tmp_path / "locks"), tmp_path)
    wait_for_lock(first, slow_s3)
    prune = run_module("prune", dict(job=JOB, storage=slow_s3, retention=dict(keep_last=1), force=True))
    assert prune.rc == 0, prune.describe()
    assert prune.result["deleted"] == [] and "is locked by backup" in prune.result["stopped"], prune.result
    rc, result, err = finish(first)
    assert rc == 0, (result, err)
    after = run_module("prune", dict(job=JOB, storage=slow_s3, retention=dict(keep_last=1), force=True))
    assert {d["manifest_key"] for d in after.result["deleted"]} == {b.manifest_key for b in history}
    verify = run_module("verify", dict(manifest_key=result["manifest_key"], storage=slow_s3))
    assert verify.rc == 0, verify.describe()


def test_without_the_lock_a_prune_mid_upload_still_cannot_see_the_backup_in_progress(
        run_module, tmp_path, slow_source, slow_s3, s3_server, s3_bucket):
    """The second rail: the manifest is written last, so an upload in progress is no backup to prune."""
    history = seed_history(slow_s3, JOB, count=3, prefix="conc")
    first = start_module("dump", dump_args(slow_source, slow_s3, tmp_path / "locks", enabled=False), tmp_path)
    deadline = time.monotonic() + 60
    while not s3_server.pending_uploads(s3_bucket):
        assert time.monotonic() < deadline and first.poll() is None, "the upload never started"
        time.sleep(0.05)
    prune = run_module("prune", dict(job=JOB, storage=slow_s3, retention=dict(keep_last=1), force=True))
    assert prune.rc == 0, prune.describe()
    assert {d["manifest_key"] for d in prune.result["deleted"]} == {b.manifest_key for b in history[1:]}
    rc, result, err = finish(first)
    assert rc == 0, (result, err)
    assert lock_object(slow_s3) is None  # lock.enabled false: none was taken
    verify = run_module("verify", dict(manifest_key=result["manifest_key"], storage=slow_s3))
    assert verify.rc == 0, verify.describe()
