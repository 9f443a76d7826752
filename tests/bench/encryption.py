#!/usr/bin/env python3
"""Benchmark of client-side encryption: the dump module with zstd + age against zstd alone (issue 6).

    make bench-encryption                          # = .venv/bin/python tests/bench/encryption.py
    .venv/bin/python tests/bench/encryption.py --size-mb 100 --repeat 1    # a quicker run

What it does, in one run:

1. starts a throwaway PostgreSQL server and builds the ~700 MB database of the dump benchmark
   (tests/bench/run.py build_database), and a fresh age key pair;
2. --repeat rounds, the three ways in a different order each round (local storage, custom format):
   (z) the dump module as ONE process with its JSON args, zstd (level 2, the default);
   (e) the same with `encryption: {method: age, recipients: [key]}`: zstd, then the plaintext
       SHA-256 tap, then `age -r`;
   (h) by hand: `pg_dump -Fc -Z0 | zstd -2 -T0 | age -r key > file` (a real pipe; every exit status
       checked), the raw tool pipeline the module wraps;
3. decrypts the last (e) artifact with the stock `age -d` and checks its SHA-256 against the
   manifest's plaintext_sha256; then backs the database up once more with age and
   `max_chunk_size: 64M`, restores it with the module and compares row counts (chunks at full size);
4. prints e/z (target <= 1.10, best of the rounds; medians too) and e/h, and writes
   tests/bench/output/encryption.json. Exit 0 unless something failed to run: it is a measurement.
"""

from __future__ import annotations

import argparse
import hashlib
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

from tests.bench.restore import Bench  # noqa: E402
from tests.bench.run import MB, build_database, tool_version  # noqa: E402
from tests.servers import PostgresServer, ServerError  # noqa: E402

OUTPUT = REPO_ROOT / "tests" / "bench" / "output" / "encryption.json"
TARGET_RATIO = 1.10
ORDERS = (("z", "e", "h"), ("e", "h", "z"), ("h", "z", "e"))


def log(message):
    print(message, flush=True)


def age_key(work: Path) -> tuple[Path, str]:
    path = work / "age-key.txt"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    public = next(line.split(": ")[1] for line in path.read_text().splitlines()
                  if line.startswith("# public key: "))
    return path, public


class EncryptionBench(Bench):
    def dump(self, database, encryption=None):
        p = self.pg.conn_params()
        source = {"engine": "postgresql", "host": p["host"], "port": p["port"], "user": p["user"],
                  "password": p["password"], "database": database}
        args = {"job": "bench-encryption", "source": source, "compression": "zstd",
                "storage": {"type": "local", "path": str(self.storage)}}
        if encryption:
            args["encryption"] = encryption
        wall, result, rss = self.run_module("dump", args, sample=True)
        return wall, result, rss

    def by_hand(self, database, recipient):
        """pg_dump -Fc -Z0 | zstd -2 -T0 | age -r recipient > file."""
        p = self.pg.conn_params()
        out_path = self.work / "by-hand.dump.zst.age"
        dump_argv = [self.pg.tool("pg_dump"), "--no-password", "-Fc", "-Z0", f"--host={p['host']}",
                     f"--port={p['port']}", f"--username={p['user']}", database]
        errs = [self.work / f"{name}.err" for name in ("pg_dump", "zstd", "age")]
        with open(out_path, "wb") as out, open(errs[0], "wb") as e0, open(errs[1], "wb") as e1, \
                open(errs[2], "wb") as e2:
            t0 = time.monotonic()
            dump = subprocess.Popen(dump_argv, stdout=subprocess.PIPE, stderr=e0, stdin=subprocess.DEVNULL,
                                    env=self.env)
            zstd = subprocess.Popen(["zstd", "-q", "-c", "-2", "-T0"], stdin=dump.stdout, stdout=subprocess.PIPE,
                                    stderr=e1)
            dump.stdout.close()
            age = subprocess.Popen(["age", "-r", recipient], stdin=zstd.stdout, stdout=out, stderr=e2)
            zstd.stdout.close()
            codes = [age.wait(), zstd.wait(), dump.wait()]
            wall = time.monotonic() - t0
        if any(codes):
            raise RuntimeError(f"by hand: exit codes age/zstd/pg_dump {codes}: "
                               + " ".join(e.read_text()[-500:] for e in errs))
        size = out_path.stat().st_size
        out_path.unlink()
        return wall, size


def chunked_round_trip(bench, encryption, identity):
    """The benchmark database backed up encrypted in 64 MiB chunks, restored by the module into a new
    database, and compared table by table (row counts): chunks at full size, not only in tests."""
    expected = bench.counts("bench_src")
    storage = {"type": "local", "path": str(bench.storage)}
    _, result, _ = bench.run_module("dump", {
        "job": "bench-encryption-chunked", "source": bench._target("bench_src"), "compression": "zstd",
        "storage": storage, "encryption": encryption, "max_chunk_size": "64M"})
    chunks = len(result["manifest"]["chunks"])
    if chunks < 2:
        raise RuntimeError(f"the chunked backup has {chunks} chunk(s); make the database larger than 64 MiB stored")
    wall, _, _ = bench.run_module("restore", {
        "manifest_key": result["manifest_key"], "storage": storage, "target": bench._target("bench_chunked"),
        "create_database": True, "decryption": {"identity_files": [str(identity)]}})
    bench.check_and_drop("bench_chunked", expected)
    return {"chunks": chunks, "stored_size": result["manifest"]["stored_size"], "restore_seconds": round(wall, 2)}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=700, help="database size (pg_database_size), default 700")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of (z), (e) and (h), default 3")
    ap.add_argument("--workdir", default=None, help="where the server and the storage go (default: a temp dir)")
    ap.add_argument("--json", default=str(OUTPUT), help="where to write the figures")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="sm-bench-enc-", dir=args.workdir))
    os.chmod(work, 0o755)  # the postgres OS user must reach the server dir below
    report = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
              "options": vars(args)}
    walls = {"z": [], "e": [], "h": []}
    sizes, rss = {}, []
    try:
        log(f"bench-encryption: starting PostgreSQL in {work}")
        with PostgresServer(fast=True, base_dir=work) as pg:
            report["versions"] = {"server": pg.version, "zstd": tool_version(["zstd", "--version"]),
                                  "age": tool_version(["age", "--version"])}
            bench = EncryptionBench(pg, work, args)
            identity, public = age_key(work)
            encryption = {"method": "age", "recipients": [public]}
            log(f"bench-encryption: building a {args.size_mb} MB database")
            report["database"] = build_database(pg, "bench_src", args.size_mb * MB, log)
            bench.dump("bench_src")  # warm-up, unmeasured
            last = None
            for i in range(args.repeat):
                log(f"bench-encryption: round {i + 1}/{args.repeat}")
                for way in ORDERS[i % len(ORDERS)]:
                    if way == "h":
                        wall, sizes["h"] = bench.by_hand("bench_src", public)
                        log(f"  (h) pg_dump | zstd | age -r      {wall:7.2f}s")
                    else:
                        wall, result, peak = bench.dump("bench_src", encryption if way == "e" else None)
                        sizes[way] = result["manifest"]["stored_size"]
                        rss.append(peak)
                        if way == "e":
                            last = result
                        log(f"  ({way}) dump module{' + age' if way == 'e' else '      '}            {wall:7.2f}s")
                    walls[way].append(wall)
            record = last["manifest"]
            plain = subprocess.run(["age", "-d", "-i", str(identity), str(bench.storage / record["artifact"])],
                                   check=True, capture_output=True).stdout
            if hashlib.sha256(plain).hexdigest() != record["encryption"]["plaintext_sha256"]:
                raise RuntimeError("the stock age -d output does not match the manifest's plaintext_sha256")
            report["plaintext_checked"] = True
            report["chunked"] = chunked_round_trip(bench, encryption, identity)
            log(f"  chunked: {report['chunked']['chunks']} chunks of <= 64 MiB, restored with exact row counts "
                f"in {report['chunked']['restore_seconds']:.1f}s")
    except (ServerError, RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"bench-encryption: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best = {k: min(v) for k, v in walls.items()}
    median = {k: statistics.median(v) for k, v in walls.items()}
    ratio, ratio_median = best["e"] / best["z"], median["e"] / median["z"]
    report.update(seconds=walls, stored_bytes=sizes, module_peak_rss_mb=max(rss), ratio_e_over_z=ratio,
                  ratio_e_over_z_median=ratio_median, ratio_e_over_h=best["e"] / best["h"],
                  target={"e_over_z": TARGET_RATIO, "pass": ratio <= TARGET_RATIO},
                  total_seconds=round(time.monotonic() - t_start, 1))
    db = report["database"]
    names = {"z": "(z) dump module, zstd", "e": "(e) dump module, zstd + age", "h": "(h) pg_dump | zstd -2 | age -r"}
    lines = [
        "",
        f"songmetrix.backup encryption benchmark  ({report['cpus']} CPUs, PostgreSQL {report['versions']['server']}, "
        f"age {report['versions']['age']})",
        f"database {db['size_bytes'] / MB:,.1f} MB (pg_database_size); custom format, zstd level 2; "
        f"{args.repeat} rounds, order rotating",
        "",
        f"{'run':<36}{'best':>8}{'median':>9}{'stored':>10}  all",
    ]
    for way in ("z", "e", "h"):
        lines.append(f"{names[way]:<36}{best[way]:7.2f}s{median[way]:8.2f}s{sizes[way] / MB:8.1f}MB  "
                     + " ".join(f"{w:.2f}" for w in walls[way]))
    lines += [
        f"  module python process peak RSS {max(rss):.1f} MB; stock age -d output matches plaintext_sha256",
        "",
        "target (issue 6)",
        f"  e/z <= {TARGET_RATIO}                    {ratio:.3f} (median {ratio_median:.3f})   "
        + ("PASS" if ratio <= TARGET_RATIO else "MISS"),
        f"  e/h (for the record)            {best['e'] / best['h']:.3f}",
        f"\ntotal benchmark time {report['total_seconds']}s",
    ]
    log("\n".join(lines))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
