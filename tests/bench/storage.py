#!/usr/bin/env python3
"""Benchmark of S3 storage: the streamed dump against the two-step path, and backup_info at scale.

    make bench-storage                          # = .venv/bin/python tests/bench/storage.py
    .venv/bin/python tests/bench/storage.py --size-mb 100 --repeat 1 --backups 2000   # quicker

In one run, against one S3 endpoint (moto's server on 127.0.0.1, the test suite's S3Server):

1. builds a PostgreSQL database of --size-mb MB (the generator of tests/bench/run.py);
2. measures, best of --repeat, interleaved:
   (e) two-step: the dump module to a local file, then plain boto3 ``upload_file`` of that
       file in a new Python process (boto3's default TransferConfig: 8 MiB parts, 10 threads)
   (f) streaming: the dump module straight to S3 (storage.type s3, its defaults)
   and (f) once more for one small table, to show memory does not grow with the dump;
3. stores --backups backups (a tiny artifact and a manifest each) under one job folder and times
   (g) a plain boto3 list_objects_v2 paginator over that folder, in a new Python process, and
   (h) the backup_info module listing them (issue 3: under 15 s for 20,000);
4. prints the targets of issue 3 (PASS/MISS) and writes tests/bench/output/storage.json.

Memory: run.py's TreeSampler polls /proc every 50 ms: VmHWM of the module's own Python process
and the peak of the summed VmRSS of its tree (module + pg_dump + zstd). (ru_maxrss from wait4()
is not used: a child forked from this big benchmark process inherits its RSS until exec.)
moto runs inside this benchmark's process, so it competes for the same CPUs in (e) and (f).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
for path in (REPO_ROOT, REPO_ROOT / "collections"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from ansible_collections.songmetrix.backup.plugins.module_utils import layout  # noqa: E402
from tests.bench.run import MB, TreeSampler, build_database  # noqa: E402
from tests.modrun import MODULE_PACKAGE, module_env, run_module  # noqa: E402
from tests.s3server import S3Server  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

OUTPUT = REPO_ROOT / "tests" / "bench" / "output" / "storage.json"
TARGETS = {"stream_over_two_step": 1.0, "stream_peak_rss_mb": 300.0, "backup_info_seconds": 15.0}


LIST_SCRIPT = """
import sys, boto3
from botocore.config import Config
endpoint, region, bucket, prefix = sys.argv[1:]
config = Config(s3={"addressing_style": "path"})
client = boto3.client("s3", endpoint_url=endpoint, region_name=region, config=config)
pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
print(sum(len(page.get("Contents", [])) for page in pages))
"""

UPLOAD_SCRIPT = """
import sys, boto3
from botocore.config import Config
endpoint, region, bucket, path, key = sys.argv[1:]
config = Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required")
boto3.client("s3", endpoint_url=endpoint, region_name=region, config=config).upload_file(path, bucket, key)
"""


def log(message):
    print(message, file=sys.stderr, flush=True)


def s3_storage(server, bucket, prefix):
    return dict(type="s3", bucket=bucket, endpoint_url=server.endpoint_url, access_key=server.access_key,
                secret_key=server.secret_key, region=server.region, prefix=prefix)


def dump_args(pg, db, storage, **source_extra):
    return dict(job="bench", source=dict(engine="postgresql", database=db, **pg.conn_params(), **source_extra),
                storage=storage)


def checked(res):
    if res.failed:
        raise SystemExit("bench: a module run failed:\n" + res.describe())
    return res


def run_sampled(name, args, work):
    """Run a module as Ansible would, sampling its process tree's memory; returns figures and result."""
    args_file = os.path.join(work, "args-%s.json" % name)
    with open(args_file, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=False)}, handle)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "%s.%s" % (MODULE_PACKAGE, name), args_file],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=module_env(None), cwd=work)
    sampler = TreeSampler([proc.pid], 0.05, main_pid=proc.pid).start()
    stdout, stderr = proc.communicate()
    wall = time.monotonic() - started
    sampler.stop()
    try:
        result = json.loads(stdout)
    except ValueError:
        result = {"failed": True, "msg": stdout.decode(errors="replace")[-2000:]}
    if proc.returncode or result.get("failed"):
        raise SystemExit("bench: %s failed: %s\n%s" % (name, result.get("msg"), stderr.decode(errors="replace")))
    return {"wall": wall, "module_peak_rss_mb": sampler.main_hwm_kb / 1024,
            "tree_peak_rss_mb": sampler.peak_sum_rss_kb / 1024}, result


def two_step(pg, server, bucket, db, work):
    """(e) dump to a local file, then boto3 upload_file of it; returns seconds and peak RSS."""
    local = os.path.join(work, "local")
    started = time.monotonic()
    figures, result = run_sampled("dump", dump_args(pg, db, dict(type="local", path=local)), work)
    artifact = os.path.join(local, result["artifact"])
    # A separate process, as a script or the aws CLI would be: it pays for importing boto3 like (f) does.
    subprocess.run([sys.executable, "-c", UPLOAD_SCRIPT, server.endpoint_url, server.region, bucket, artifact,
                    "two-step/" + result["artifact"]], check=True,
                   env=dict(os.environ, AWS_ACCESS_KEY_ID=server.access_key, AWS_SECRET_ACCESS_KEY=server.secret_key))
    seconds = time.monotonic() - started
    os.unlink(artifact)
    os.unlink(os.path.join(local, result["manifest_key"]))
    return dict(figures, wall=seconds, dump_wall=figures["wall"], stored_size=result["manifest"]["stored_size"])


def streamed(pg, server, bucket, db, work, **source_extra):
    """(f) the dump module streaming to S3."""
    figures, result = run_sampled("dump", dump_args(pg, db, s3_storage(server, bucket, "stream"), **source_extra), work)
    return dict(figures, stored_size=result["manifest"]["stored_size"], raw_size=result["manifest"]["raw_size"])


def store_many_backups(server, bucket, count):
    """``count`` backups of job 'many' one hour apart, each a 16-byte artifact and a small manifest."""
    client = server.client()
    first = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)

    def put(index):
        started = first + datetime.timedelta(hours=index)
        stem = layout.backup_stem("info", "many", "scheduled", started)
        artifact = layout.artifact_key(stem, "sql.zst")
        client.put_object(Bucket=bucket, Key=artifact, Body=b"0123456789abcdef")
        record = {"format_version": 1, "job": "many", "artifact": artifact, "started": layout.iso_utc(started)}
        client.put_object(Bucket=bucket, Key=layout.manifest_key(stem), Body=json.dumps(record).encode())

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, range(count)))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=300, help="database size (pg_database_size), default 300")
    ap.add_argument("--repeat", type=int, default=2, help="measure (e) and (f) N times, keep the best (default 2)")
    ap.add_argument("--backups", type=int, default=20000, help="backups listed by backup_info (default 20000)")
    ap.add_argument("--skip-dump", action="store_true", help="measure only backup_info (steps 3-4)")
    ap.add_argument("--json", default=str(OUTPUT), help="where to write the figures")
    return ap.parse_args(argv)


def verdict(value, target):
    return "PASS" if value <= target else "MISS"


def main(argv=None):
    args = parse_args(argv)
    report = {"options": vars(args), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="songmetrix-bench-s3-") as work:
        os.chmod(work, 0o755)  # the PostgreSQL server runs as user postgres below it
        with PostgresServer(fast=True, base_dir=Path(work)) as pg, S3Server() as server:
            bucket = server.create_bucket("bench")
            log("bench: building a %d MB database" % args.size_mb)
            report["database"] = build_database(pg, "bench_s3", args.size_mb * MB, log)
            two, stream, small = [], [], None
            for index in range(0 if args.skip_dump else args.repeat):
                log("bench: round %d/%d" % (index + 1, args.repeat))
                two.append(two_step(pg, server, bucket, "bench_s3", work))
                stream.append(streamed(pg, server, bucket, "bench_s3", work))
            if not args.skip_dump:
                small = streamed(pg, server, bucket, "bench_s3", work, include=["public.customers"])
            log("bench: storing %d backups for backup_info" % args.backups)
            store_many_backups(server, bucket, args.backups)
            started = time.monotonic()
            listed = subprocess.run([sys.executable, "-c", LIST_SCRIPT, server.endpoint_url, server.region, bucket,
                                     "info/many/"], check=True, stdout=subprocess.PIPE,
                                    env=dict(os.environ, AWS_ACCESS_KEY_ID=server.access_key,
                                             AWS_SECRET_ACCESS_KEY=server.secret_key)).stdout
            raw_list_seconds = time.monotonic() - started
            info = checked(run_module("backup_info", dict(job="many", storage=s3_storage(server, bucket, "info"))))
            if info.result["count"] != args.backups:
                raise SystemExit("bench: backup_info found %d backups, not %d" % (info.result["count"], args.backups))
    figures = {"backup_info_seconds": info.duration, "raw_list_seconds": raw_list_seconds,
               "raw_list_objects": int(listed), "backup_info_over_raw_list": info.duration / raw_list_seconds}
    if two:
        figures.update(two_step=min(two, key=lambda r: r["wall"]), stream=min(stream, key=lambda r: r["wall"]),
                       stream_small=small)
        figures["stream_over_two_step"] = figures["stream"]["wall"] / figures["two_step"]["wall"]
    report.update(figures=figures, runs={"two_step": two, "stream": stream})
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(report, handle, indent=2, default=str)
    if two:
        print_dump_figures(figures, args)
    print("(g) boto3 list_objects_v2 of the %d objects: %.2f s" % (figures["raw_list_objects"], raw_list_seconds))
    print("(h) backup_info over %d backups: %.2f s, h/g %.2f  (target < %.0f s)  %s" % (
        args.backups, info.duration, figures["backup_info_over_raw_list"], TARGETS["backup_info_seconds"],
        verdict(info.duration, TARGETS["backup_info_seconds"])))
    return 0


def print_dump_figures(figures, args):
    best_two, best_stream, small = figures["two_step"], figures["stream"], figures["stream_small"]
    print("dump of %.0f MB raw (%.0f MB stored), best of %d" % (
        best_stream["raw_size"] / MB, best_stream["stored_size"] / MB, args.repeat))
    print("(e) dump to file + boto3 upload_file  %7.2f s  (dump alone %.2f s)" % (
        best_two["wall"], best_two["dump_wall"]))
    print("(f) dump streamed to S3               %7.2f s" % best_stream["wall"])
    print("f/e %.3f  (target <= %.1f)  %s" % (
        figures["stream_over_two_step"], TARGETS["stream_over_two_step"],
        verdict(figures["stream_over_two_step"], TARGETS["stream_over_two_step"])))
    print("peak RSS (f): module %.1f MB, tree %.1f MB; one small table: module %.1f MB, tree %.1f MB"
          "  (target < %.0f MB, flat)  %s" % (
              best_stream["module_peak_rss_mb"], best_stream["tree_peak_rss_mb"], small["module_peak_rss_mb"],
              small["tree_peak_rss_mb"], TARGETS["stream_peak_rss_mb"],
              verdict(best_stream["tree_peak_rss_mb"], TARGETS["stream_peak_rss_mb"])))
    print("(e) for comparison: module %.1f MB, tree %.1f MB" % (
        best_two["module_peak_rss_mb"], best_two["tree_peak_rss_mb"]))


if __name__ == "__main__":
    sys.exit(main())
