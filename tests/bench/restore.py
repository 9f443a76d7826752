#!/usr/bin/env python3
"""Benchmark of the songmetrix.backup.restore module against restoring the same backup by hand (issue 5).

    make bench-restore                           # = .venv/bin/python tests/bench/restore.py
    .venv/bin/python tests/bench/restore.py --size-mb 100 --repeat 1     # a quicker run

What it does, in one run:

1. starts a throwaway PostgreSQL server and builds the ~700 MB database of the dump benchmark
   (tests/bench/run.py build_database);
2. backs it up once with the dump module (custom format, zstd, local storage), unmeasured;
3. restores that one stored artifact, --repeat rounds, the two ways alternating in order each round:
   (h) by hand: `zstd -dc <artifact> | pg_restore -d <db>` into a database created beforehand
       (a real pipe; both exit statuses checked; creating the database is not timed);
   (m) the restore module as ONE process with its JSON args (the way Ansible runs it on a target),
       with its defaults: the SHA-256 verification read of the whole artifact first (verify_first),
       CREATE DATABASE (create_database: true), then storage -> zstd -d -> pg_restore --no-owner;
   and once (v) the module with verify_first: false, to show what the verification read costs;
4. after every restore, checks the restored row counts equal the source's and drops the database;
5. prints the ratio m/h (target <= 1.2, best of the rounds; medians too) and writes
   tests/bench/output/restore.json. Exit 0 unless something failed to run: it is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.bench.run import MB, TreeSampler, build_database, tool_version, wait_rusage  # noqa: E402
from tests.servers import PostgresServer, ServerError  # noqa: E402

OUTPUT = REPO_ROOT / "tests" / "bench" / "output" / "restore.json"
PACKAGE = "ansible_collections.songmetrix.backup.plugins.modules."
TARGET_RATIO = 1.2
TABLES = ("orders", "events", "customers")


def log(message):
    print(message, flush=True)


class Bench:
    def __init__(self, pg: PostgresServer, work: Path, args):
        self.pg = pg
        self.work = work
        self.args = args
        self.storage = work / "storage"
        self.storage.mkdir()
        self.env = pg.client_env()
        self.counter = 0
        self.module_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "collections"), LANG="C.UTF-8")

    def _target(self, database):
        p = self.pg.conn_params()
        return {"engine": "postgresql", "host": p["host"], "port": p["port"], "user": p["user"],
                "password": p["password"], "database": database}

    def run_module(self, name, args, sample=False):
        """(wall seconds, result, module peak RSS MB) of one module process."""
        self.counter += 1
        args_file = self.work / f"args-{self.counter}.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(
            args, _ansible_check_mode=False, _ansible_diff=False, _ansible_verbosity=0)}))
        args_file.chmod(0o600)
        out_f = self.work / f"out-{self.counter}"
        with open(out_f, "wb") as out:
            t0 = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", PACKAGE + name, str(args_file)], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, env=self.module_env, cwd=self.work)
            sampler = TreeSampler([proc.pid], 0.05, main_pid=proc.pid).start() if sample else None
            wait_rusage(proc)
            wall = time.monotonic() - t0
            if sampler:
                sampler.stop()
        text = out_f.read_text(errors="replace")
        args_file.unlink()
        try:
            result = json.loads(text[text.find("{"):])
        except ValueError:
            result = None
        if proc.returncode != 0 or not result or result.get("failed"):
            raise RuntimeError(f"{name} module failed (rc {proc.returncode}): "
                               f"{(result or {}).get('msg') or text[-3000:]}")
        return wall, result, (sampler.main_hwm_kb / 1024 if sampler else None)

    def backup(self, database):
        p = self.pg.conn_params()
        source = {"engine": "postgresql", "host": p["host"], "port": p["port"], "user": p["user"],
                  "password": p["password"], "database": database}
        wall, result, _ = self.run_module("dump", {"job": "bench-restore", "source": source,
                                                   "storage": {"type": "local", "path": str(self.storage)}})
        return wall, result

    def by_hand(self, artifact, database):
        """zstd -dc artifact | pg_restore -d database (the database exists, empty)."""
        self.pg.create_database(database)
        p = self.pg.conn_params()
        restore_argv = [self.pg.tool("pg_restore"), "--no-password", f"--host={p['host']}", f"--port={p['port']}",
                        f"--username={p['user']}", f"--dbname={database}"]
        errs = [self.work / "zstd.err", self.work / "pg_restore.err"]
        with open(errs[0], "wb") as e1, open(errs[1], "wb") as e2:
            t0 = time.monotonic()
            zstd = subprocess.Popen(["zstd", "-dc", str(artifact)], stdout=subprocess.PIPE, stderr=e1,
                                    stdin=subprocess.DEVNULL)
            restore = subprocess.Popen(restore_argv, stdin=zstd.stdout, stdout=subprocess.DEVNULL, stderr=e2,
                                       env=self.env)
            zstd.stdout.close()  # pg_restore holds the read end
            restore.wait()
            zstd.wait()
            wall = time.monotonic() - t0
        if zstd.returncode != 0 or restore.returncode != 0:
            raise RuntimeError(f"by hand: zstd exited {zstd.returncode}, pg_restore {restore.returncode}: "
                               f"{errs[0].read_text()[-1000:]} {errs[1].read_text()[-1000:]}")
        return wall

    def with_module(self, manifest_key, database, verify_first=True):
        wall, result, rss = self.run_module("restore", {
            "manifest_key": manifest_key,
            "storage": {"type": "local", "path": str(self.storage)},
            "target": self._target(database),
            "create_database": True,
            "verify_first": verify_first,
        }, sample=True)
        return wall, result, rss

    def counts(self, database):
        sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES)
        rows = self.pg.psql(sql, database, timeout=600).splitlines()
        return dict(line.split("|") for line in rows)

    def check_and_drop(self, database, expected):
        got = self.counts(database)
        self.pg.drop_database(database)
        if got != expected:
            raise RuntimeError(f"restored {database} has rows {got}, the source {expected}")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=700, help="database size (pg_database_size), default 700")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of (h) and (m), default 3")
    ap.add_argument("--skip-unverified", action="store_true", help="do not run (v), verify_first: false")
    ap.add_argument("--workdir", default=None, help="where the server and the storage go (default: a temp dir)")
    ap.add_argument("--json", default=str(OUTPUT), help="where to write the figures")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="sm-bench-restore-", dir=args.workdir))
    os.chmod(work, 0o755)  # the postgres OS user must reach the server dir below
    report = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
              "options": vars(args)}
    hand, module, module_rss, unverified = [], [], [], None
    try:
        log(f"bench-restore: starting PostgreSQL in {work}")
        with PostgresServer(fast=True, base_dir=work) as pg:
            report["versions"] = {"server": pg.version,
                                  "pg_restore": tool_version([pg.tool("pg_restore"), "--version"]),
                                  "zstd": tool_version(["zstd", "--version"])}
            bench = Bench(pg, work, args)
            log(f"bench-restore: building a {args.size_mb} MB database")
            report["database"] = build_database(pg, "bench_src", args.size_mb * MB, log)
            expected = bench.counts("bench_src")
            dump_wall, dumped = bench.backup("bench_src")
            record = dumped["manifest"]
            key = dumped["manifest_key"]
            artifact = bench.storage / record["artifact"]
            report["backup"] = {"dump_seconds": round(dump_wall, 2), "raw_size": record["raw_size"],
                                "stored_size": record["stored_size"], "manifest_key": key}
            log(f"  backup: {record['stored_size'] / MB:.1f} MB stored ({record['raw_size'] / MB:.1f} MB raw) "
                f"in {dump_wall:.1f}s")
            for i in range(args.repeat):
                log(f"bench-restore: round {i + 1}/{args.repeat}")
                order = ("h", "m") if i % 2 == 0 else ("m", "h")
                for way in order:
                    name = f"r{i}_{way}"
                    if way == "h":
                        wall = bench.by_hand(artifact, name)
                        hand.append(wall)
                        log(f"  (h) zstd -dc | pg_restore     {wall:7.2f}s")
                    else:
                        wall, result, rss = bench.with_module(key, name)
                        module.append(wall)
                        module_rss.append(rss)
                        log(f"  (m) restore module           {wall:7.2f}s  (read {result['bytes_read'] / MB:.1f} MB)")
                    bench.check_and_drop(name, expected)
            if not args.skip_unverified:
                wall, result, _ = bench.with_module(key, "r_v", verify_first=False)
                unverified = wall
                log(f"  (v) module, verify_first off {wall:7.2f}s  (read {result['bytes_read'] / MB:.1f} MB)")
                bench.check_and_drop("r_v", expected)
    except (ServerError, RuntimeError, OSError) as exc:
        print(f"bench-restore: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best_ratio = min(module) / min(hand)
    median_ratio = statistics.median(module) / statistics.median(hand)
    report.update(hand_seconds=hand, module_seconds=module, unverified_seconds=unverified,
                  module_peak_rss_mb=max(module_rss), ratio_best=best_ratio, ratio_median=median_ratio,
                  target={"m_over_h": TARGET_RATIO, "pass": best_ratio <= TARGET_RATIO},
                  total_seconds=round(time.monotonic() - t_start, 1))
    db = report["database"]
    lines = [
        "",
        f"songmetrix.backup restore benchmark  ({report['cpus']} CPUs, PostgreSQL {report['versions']['server']}, "
        f"{report['versions']['zstd'].split(',')[0].strip('* ')})",
        f"database {db['size_bytes'] / MB:,.1f} MB (pg_database_size); backup {record['stored_size'] / MB:.1f} MB "
        f"stored, zstd, custom format; {args.repeat} rounds, order alternating",
        "",
        f"{'run':<44}{'best':>8}{'median':>9}  all",
        f"{'(h) zstd -dc file | pg_restore -d db':<44}{min(hand):7.2f}s{statistics.median(hand):8.2f}s  "
        + " ".join(f"{w:.2f}" for w in hand),
        f"{'(m) restore module (verify first, create db)':<44}{min(module):7.2f}s{statistics.median(module):8.2f}s  "
        + " ".join(f"{w:.2f}" for w in module),
    ]
    if unverified is not None:
        lines.append(f"{'(v) restore module, verify_first: false':<44}{unverified:7.2f}s")
    lines += [
        f"  module python process peak RSS {max(module_rss):.1f} MB",
        "",
        "target (issue 5)",
        f"  m/h <= {TARGET_RATIO}                           {best_ratio:.3f} (median {median_ratio:.3f})   "
        + ("PASS" if best_ratio <= TARGET_RATIO else "MISS"),
        f"\ntotal benchmark time {report['total_seconds']}s",
    ]
    print("\n".join(lines))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
