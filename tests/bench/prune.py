#!/usr/bin/env python3
"""Benchmark of prune (issue 4): planning 100,000 backups, and pruning 10,000 backups from one S3 prefix.

    make bench-prune                         # = .venv/bin/python tests/bench/prune.py
    .venv/bin/python tests/bench/prune.py --backups 2000 --plan-backups 20000     # quicker

(a) retention.plan() over --plan-backups backups (one an hour; timezone Europe/Berlin, so every
    stamp is converted and DST counts; keep_last 10, hourly 48, daily 7, weekly 4, monthly 12,
    yearly 5, within 3d): best of --repeat runs. Target: under 2 s for 100,000.
(b) --backups backups of one job (one every 2 hours, ending now), each a tiny gzip artifact and its
    manifest (tests/history.py make_history), in a bucket of moto's S3 server (tests/s3server.py,
    in this process). Then run_prune() with keep_daily 7, keep_weekly 4, keep_monthly 12 and force,
    in this process, timed. Targets: under 60 s; no more DeleteObjects requests than
    ceil(objects deleted / 1000). The DeleteObjects count is the storage's own (delete_requests)
    and, independently, what moto's HTTP server received (a WSGI wrapper that counts requests
    by S3 operation); the objects left are checked against the kept backups.

The history is written straight into moto's in-process backend by default (20,000 objects in
about a second; through HTTP it takes minutes, as moto needs ~6 ms a request here), so only
the prune talks HTTP; --history-via-storage writes it through S3Storage instead.
moto runs inside this process, so it competes with the prune for the same CPUs (and the GIL).
Writes tests/bench/output/prune.json; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

REPO_ROOT = Path(__file__).resolve().parents[2]
for path in (REPO_ROOT, REPO_ROOT / "collections"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from ansible_collections.songmetrix.backup.plugins.module_utils import retention  # noqa: E402
from ansible_collections.songmetrix.backup.plugins.module_utils import storage as storage_mod  # noqa: E402
from ansible_collections.songmetrix.backup.plugins.module_utils.prune import run_prune  # noqa: E402
from tests.history import make_history  # noqa: E402
from tests.s3server import S3Server, classify  # noqa: E402

OUTPUT = REPO_ROOT / "tests" / "bench" / "output" / "prune.json"
TARGETS = {"plan_seconds": 2.0, "prune_seconds": 60.0}
PLAN_POLICY = {"keep_last": 10, "keep_hourly": 48, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12,
               "keep_yearly": 5, "keep_within": "3d"}
PRUNE_POLICY = {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12}
PREFIX = "bench"
JOB = "many"
UTC = datetime.timezone.utc


def log(message):
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- (a) planning


def bench_plan(count, repeat):
    newest = datetime.datetime(2026, 3, 29, 12, tzinfo=UTC)  # the spring DST change in Europe/Berlin
    backups = [SimpleNamespace(started=newest - datetime.timedelta(hours=n)) for n in range(count)]
    times = []
    plan = None
    for _ in range(repeat):
        started = time.perf_counter()
        plan = retention.plan(backups, PLAN_POLICY, "Europe/Berlin", now=newest)
        times.append(time.perf_counter() - started)
    if len(plan.keep) + len(plan.delete) != count:
        raise SystemExit("bench: the plan lost backups: %d kept + %d deleted != %d"
                         % (len(plan.keep), len(plan.delete), count))
    return {"backups": count, "seconds": min(times), "runs": times, "kept": len(plan.keep), "deleted": len(plan.delete)}


# --------------------------------------------------------------------------- (b) pruning on S3


class RequestCounter:
    """WSGI middleware around moto's app: how many requests of each S3 operation the server received."""

    def __init__(self, app):
        self.app = app
        self.counts = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        target = environ.get("PATH_INFO", "") + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        operation, _part = classify(environ.get("REQUEST_METHOD", ""), target, headers)
        with self._lock:
            self.counts[operation] += 1
        return self.app(environ, start_response)

    def reset(self):
        with self._lock:
            self.counts.clear()


def count_requests(server):
    """Put a RequestCounter in front of the running S3Server's WSGI app (moto's werkzeug server)."""
    wsgi_server = server._moto._server  # ThreadedMotoServer's werkzeug server: test code, private on purpose
    counter = RequestCounter(wsgi_server.app)
    wsgi_server.app = counter
    return counter


class MotoBackendStorage:
    """make_history's storage for the bench: put_small stores straight into moto's in-process backend."""

    type = "moto-backend"  # not thread-safe as far as make_history knows: written from one thread

    def __init__(self, bucket):
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        self.backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        self.bucket = bucket

    def put_small(self, key, data, metadata=None):
        self.backend.put_object(self.bucket, key, bytes(data))


class StorageSpy:
    """Wraps storage.make_storage to keep every storage run_prune makes (to read its delete_requests)."""

    def __init__(self):
        self.made = []
        self._original = storage_mod.make_storage

    def __enter__(self):
        def make(params):
            made = self._original(params)
            self.made.append(made)
            return made

        storage_mod.make_storage = make
        return self

    def __exit__(self, *exc_info):
        storage_mod.make_storage = self._original


def s3_params(server, bucket):
    return dict(type="s3", bucket=bucket, endpoint_url=server.endpoint_url, access_key=server.access_key,
                secret_key=server.secret_key, region=server.region, prefix=PREFIX)


def bench_prune(count, via_storage):
    newest = datetime.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - datetime.timedelta(hours=1)
    stamps = [newest - datetime.timedelta(hours=2 * n) for n in range(count)]
    with S3Server() as server:
        bucket = server.create_bucket("bench-prune")
        params = s3_params(server, bucket)
        log("bench: storing %d backups (%s)" % (count, "through S3Storage" if via_storage else "into moto's backend"))
        started = time.monotonic()
        history = make_history(params if via_storage else MotoBackendStorage(bucket), PREFIX, JOB, stamps)
        history_seconds = time.monotonic() - started
        counter = count_requests(server)
        log("bench: pruning")
        with StorageSpy() as spy:
            started = time.monotonic()
            result = run_prune(dict(job=JOB, storage=params, retention=dict(PRUNE_POLICY), force=True))
            seconds = time.monotonic() - started
        received = dict(counter.counts)
        left = set(server.keys(bucket))
    if len(spy.made) != 1:
        raise SystemExit("bench: run_prune made %d storages, expected 1" % len(spy.made))
    kept = {entry["manifest_key"] for entry in result["kept"]}
    by_manifest = {backup.manifest_key: backup for backup in history}
    expected_left = kept | {by_manifest[key].artifact_key for key in kept}
    objects_deleted = sum(1 + len(entry["objects"]) for entry in result["deleted"])
    if left != expected_left or len(result["deleted"]) + len(kept) != count:
        raise SystemExit("bench: after the prune %d objects are left, expected %d (%d kept, %d deleted of %d)"
                         % (len(left), len(expected_left), len(kept), len(result["deleted"]), count))
    return {
        "backups": count,
        "history_seconds": history_seconds,
        "history_via": "S3Storage" if via_storage else "moto backend",
        "seconds": seconds,
        "kept": len(kept),
        "deleted": len(result["deleted"]),
        "objects_deleted": objects_deleted,
        "delete_requests_storage": spy.made[0].delete_requests,
        "delete_objects_received": received.get("DeleteObjects", 0),
        "requests_received": received,
        "delete_requests_target": math.ceil(objects_deleted / 1000),
    }


# --------------------------------------------------------------------------- report


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan-backups", type=int, default=100000, help="backups planned in (a), default 100000")
    ap.add_argument("--repeat", type=int, default=3, help="plan N times in (a), keep the best (default 3)")
    ap.add_argument("--backups", type=int, default=10000, help="backups pruned in (b), default 10000")
    ap.add_argument("--history-via-storage", action="store_true",
                    help="write (b)'s history through S3Storage over HTTP (minutes) instead of into moto's backend")
    ap.add_argument("--json", default=str(OUTPUT), help="where to write the figures")
    return ap.parse_args(argv)


def verdict(ok):
    return "PASS" if ok else "FAIL"


def main(argv=None):
    args = parse_args(argv)
    log("bench: planning %d backups" % args.plan_backups)
    plan = bench_plan(args.plan_backups, args.repeat)
    prune = bench_prune(args.backups, args.history_via_storage)
    report = {"options": vars(args), "cpus": os.cpu_count(), "plan": plan, "prune": prune}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(report, handle, indent=2, default=str)

    checks = [
        plan["seconds"] < TARGETS["plan_seconds"],
        prune["seconds"] < TARGETS["prune_seconds"],
        prune["delete_requests_storage"] <= prune["delete_requests_target"],
        prune["delete_objects_received"] <= prune["delete_requests_target"],
    ]
    print("(a) retention.plan of %d backups (Europe/Berlin, 7 rules): %.3f s best of %d, %d kept"
          "  (target < %.0f s)  %s" % (plan["backups"], plan["seconds"], args.repeat, plan["kept"],
                                        TARGETS["plan_seconds"], verdict(checks[0])))
    print("(b) history of %d backups (%d objects) into moto: %.1f s (%s, not part of the target)" % (
        prune["backups"], 2 * prune["backups"], prune["history_seconds"], prune["history_via"]))
    print("(b) run_prune over %d backups on S3: %.2f s, %d kept, %d deleted (%d objects)  (target < %.0f s)  %s" % (
        prune["backups"], prune["seconds"], prune["kept"], prune["deleted"], prune["objects_deleted"],
        TARGETS["prune_seconds"], verdict(checks[1])))
    print("(b) DeleteObjects: storage.delete_requests %d, received by the server %d  (target <= ceil(%d/1000) = %d)"
          "  %s" % (prune["delete_requests_storage"], prune["delete_objects_received"], prune["objects_deleted"],
                    prune["delete_requests_target"], verdict(checks[2] and checks[3])))
    print("(b) requests the server received during the prune: %s" % ", ".join(
        "%s %d" % item for item in sorted(prune["requests_received"].items())))
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
