#!/usr/bin/env python3
"""Benchmark of the songmetrix.backup.dump module against the bare PostgreSQL dump paths.

    make bench                                 # = .venv/bin/python tests/bench/run.py
    .venv/bin/python tests/bench/run.py --size-mb 100 --repeat 1   # a quicker run

What it does, in one run (nothing is cached between runs):

1. starts a throwaway PostgreSQL server (tests/servers.py: 127.0.0.1, free port, password auth);
2. builds a database of --size-mb MB (pg_database_size) and a second one of --small-pct % of it,
   with server-side generate_series: md5 tokens, words from a small vocabulary, numerics,
   timestamps, doubles and a jsonb column (compressible like real data, not all-random);
3. measures, best of --repeat (interleaved, after one unmeasured warm-up dump of each database):
   (a) pg_dump -Fc -Z0 > /dev/null                       the bare dump tool
   (b) pg_dump | gzip -6 > file                          the common path (a real pipe, both exits checked)
   (c) the dump module as ONE process with its JSON args  the way Ansible runs it on a target
       (python -m ansible_collections.songmetrix.backup.plugins.modules.dump ARGS.json)
   (c') the same with a signing key (`signing`), interleaved with (c)
   (d) the same through ansible-playbook (localhost, connection local), for the record
   and (c) once more against the small database, to show the module's memory does not grow;
   the cost of signing itself is also timed in this process (Keyring.encode of (c)'s manifest, 1,000
   times) and set against (c)'s wall time: the target is under 1% (issue 17);
4. prints a table with the targets of issue 2 (PASS/MISS) and writes the same figures to
   tests/bench/output/latest.json. Exit 0 unless something failed to run: it is a measurement.

Memory: a sampler thread polls /proc every --sample-ms: VmHWM of the module's own python process
(its peak RSS), VmHWM of each tool in the tree, and the sum of VmRSS over the whole process tree
(module + pg_dump + zstd; the PostgreSQL backend serving pg_dump is the server's, not counted).
The kernel's ru_maxrss from wait4() on the module is reported too: it is the peak of the largest
single process in the tree (the module or one of the children it reaped), not a sum.

Temporary files: during (c) the sampler lists the regular files every process of the tree holds
open (and their sizes), the size of the (empty) spool_dir and the growth of used space on the
file systems of the storage, spool and /tmp; "no temporary file of the dump's size" passes when
the only large open file is the artifact being written, the spool stays empty and the disk
usage grows by about the stored size only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.servers import PostgresServer, ServerError  # noqa: E402

OUTPUT_DIR = REPO_ROOT / "tests" / "bench" / "output"
MODULE = "ansible_collections.songmetrix.backup.plugins.modules.dump"
MB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")

TARGETS = {
    "c_over_a": 1.25,
    "c_over_b": 0.35,
    "module_peak_rss_mb": 100.0,
    "signing_share": 0.01,
}
SIGNING_KEY = "bench-signing-key-" + "0" * 32

# A small vocabulary: text that compresses like prose/log lines, not like random bytes.
WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar "
    "papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu order invoice payment "
    "refund customer shipment warehouse parcel courier delayed delivered returned pending approved "
    "rejected cancelled express standard priority discount coupon voucher basket checkout account "
    "profile session login logout password reset email phone address street city country region "
    "postal code vinyl album single track artist playlist stream royalty label release concert "
    "ticket venue tour merch poster shirt hoodie record sleeve edition limited remaster bonus "
    "acoustic live studio demo mix master vocal guitar bass drums piano synth string brass choir "
    "the a of to and in for on with by from at as is was"
).split()

CHANNELS = ["web", "ios", "android", "partner", "store", "phone"]
STATUSES = ["new", "paid", "paid", "shipped", "delivered", "delivered", "delivered", "cancelled", "refunded"]
LEVELS = ["DEBUG", "INFO", "INFO", "INFO", "INFO", "WARN", "ERROR"]


def sql_text_array(values) -> str:
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]::text[]"


SCHEMA_SQL = """
CREATE TABLE orders (
    id          bigint PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    customer_id integer NOT NULL,
    status      text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    quantity    smallint NOT NULL,
    sku         text NOT NULL,
    token       text NOT NULL,
    note        text,
    attrs       jsonb NOT NULL
);
CREATE TABLE events (
    id          bigint PRIMARY KEY,
    order_id    bigint NOT NULL,
    at          timestamptz NOT NULL,
    level       text NOT NULL,
    message     text NOT NULL,
    latency_ms  double precision NOT NULL
);
CREATE TABLE customers (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    country     char(2) NOT NULL,
    signed_up   date NOT NULL,
    balance     numeric(14,2) NOT NULL
);
"""


def orders_sql(first: int, last: int, seed: float) -> str:
    words = sql_text_array(WORDS)
    n = len(WORDS)

    def w(k):  # the k-th random word of the row
        return f"v.w[1 + floor(random() * {n})::int]"

    note_words = ", ".join(w(k) for k in range(10))
    return f"""
SELECT setseed({seed});
INSERT INTO orders
SELECT i,
       timestamptz '2021-01-01 00:00:00+00' + i * interval '3 seconds' + floor(random() * 3) * interval '1 second',
       floor(random() ^ 2 * 200000)::int + 1,
       (v.st)[1 + floor(random() * {len(STATUSES)})::int],
       round((random() * 480 + 0.5)::numeric, 2),
       1 + floor(random() ^ 3 * 12)::int,
       'SKU-' || lpad(floor(random() * 25000)::int::text, 6, '0'),
       md5(i::text || ':order'),
       array_to_string((ARRAY[{note_words}])[1:3 + (i % 8)], ' '),
       jsonb_build_object(
           'channel', (v.ch)[1 + floor(random() * {len(CHANNELS)})::int],
           'score', round(random()::numeric, 4),
           'tags', jsonb_build_array({w(0)}, {w(1)}),
           'ip', '10.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int || '.'
                 || floor(random() * 256)::int,
           'mobile', random() < 0.4,
           'items', 1 + floor(random() * 5)::int)
FROM generate_series({first}, {last}) AS i,
     (SELECT {words} AS w, {sql_text_array(STATUSES)} AS st, {sql_text_array(CHANNELS)} AS ch) AS v;
"""


def events_sql(first: int, last: int, seed: float, max_order: int) -> str:
    words = sql_text_array(WORDS)
    n = len(WORDS)
    msg_words = " || ' ' || ".join(f"v.w[1 + floor(random() * {n})::int]" for _ in range(5))
    return f"""
SELECT setseed({seed});
INSERT INTO events
SELECT i,
       floor(random() * {max_order})::bigint + 1,
       timestamptz '2021-01-01 00:00:00+00' + i * interval '1 second' + random() * interval '1 second',
       (v.lv)[1 + floor(random() * {len(LEVELS)})::int],
       'customer ' || (floor(random() ^ 2 * 200000)::int + 1) || ' ' || {msg_words},
       random() * 1000
FROM generate_series({first}, {last}) AS i,
     (SELECT {words} AS w, {sql_text_array(LEVELS)} AS lv) AS v;
"""


def customers_sql(count: int) -> str:
    words = sql_text_array(WORDS)
    n = len(WORDS)
    return f"""
SELECT setseed(0.5);
INSERT INTO customers
SELECT i,
       initcap(v.w[1 + floor(random() * {n})::int]) || ' ' || initcap(v.w[1 + floor(random() * {n})::int]),
       'user' || i || '@example.' || (ARRAY['com','org','net','de','fr'])[1 + floor(random() * 5)::int],
       (ARRAY['DE','FR','US','GB','NL','SE','PL','ES','IT','JP'])[1 + floor(random() * 10)::int],
       date '2015-01-01' + floor(random() * 3650)::int,
       round((random() * 10000 - 2000)::numeric, 2)
FROM generate_series(1, {count}) AS i, (SELECT {words} AS w) AS v;
"""


# --------------------------------------------------------------------------- database build


def db_size(pg: PostgresServer, db: str) -> int:
    return int(pg.psql("SELECT pg_database_size(current_database())", db))


def table_bytes(pg: PostgresServer, db: str, table: str) -> int:
    return int(pg.psql(f"SELECT pg_total_relation_size('{table}')", db))


def run_parallel(pg: PostgresServer, db: str, scripts: list[str]) -> None:
    """Run SQL scripts in separate sessions, two at a time (this machine may have 2 cores)."""
    errors = []

    def worker(items):
        for sql in items:
            try:
                pg.psql(sql, db, timeout=3600)
            except ServerError as exc:
                errors.append(exc)
                return

    lanes = [scripts[0::2], scripts[1::2]]
    threads = [threading.Thread(target=worker, args=(lane,)) for lane in lanes if lane]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def build_database(pg: PostgresServer, db: str, target_bytes: int, log) -> dict:
    """Create ``db`` and fill it to about ``target_bytes`` of pg_database_size."""
    t0 = time.monotonic()
    pg.create_database(db)
    pg.psql(SCHEMA_SQL, db)
    customers = 200000 if target_bytes >= 300 * MB else 20000
    pg.psql(customers_sql(customers), db)
    # Calibrate bytes per row on a first slice, then fill the rest in parallel slices.
    cal_orders, cal_events = 20000, 30000
    pg.psql(orders_sql(1, cal_orders, 0.11), db)
    pg.psql(events_sql(1, cal_events, 0.22, cal_orders), db)
    per_order = table_bytes(pg, db, "orders") / cal_orders
    per_event = table_bytes(pg, db, "events") / cal_events
    remaining = max(0, target_bytes - db_size(pg, db))
    # About 65% of the bytes in orders (wide rows with jsonb), 35% in events (narrow log rows).
    n_orders = cal_orders + int(remaining * 0.65 / per_order)
    n_events = cal_events + int(remaining * 0.35 / per_event)
    scripts = []
    parts = 4
    for part in range(parts):
        lo = cal_orders + 1 + (n_orders - cal_orders) * part // parts
        hi = cal_orders + (n_orders - cal_orders) * (part + 1) // parts
        if hi >= lo:
            scripts.append(orders_sql(lo, hi, 0.3 + part / 100))
        lo = cal_events + 1 + (n_events - cal_events) * part // parts
        hi = cal_events + (n_events - cal_events) * (part + 1) // parts
        if hi >= lo:
            scripts.append(events_sql(lo, hi, 0.6 + part / 100, n_orders))
    run_parallel(pg, db, scripts)
    # Top up when the estimate fell short (index page splits, TOAST): events rows, small steps.
    for _ in range(5):
        size = db_size(pg, db)
        if size >= target_bytes * 0.97:
            break
        more = int((target_bytes - size) / per_event)
        pg.psql(events_sql(n_events + 1, n_events + more, 0.9, n_orders), db, timeout=3600)
        n_events += more
    # Set hint bits and the visibility map now, so no measured dump pays for the first read.
    pg.psql("VACUUM (FREEZE, ANALYZE)", db, timeout=3600)
    pg.psql("CHECKPOINT", db)
    size = db_size(pg, db)
    info = {
        "database": db,
        "size_bytes": size,
        "rows": {"orders": n_orders, "events": n_events, "customers": customers},
        "build_seconds": round(time.monotonic() - t0, 1),
    }
    log(f"  {db}: {size / MB:.0f} MB, {n_orders + n_events + customers:,} rows in {info['build_seconds']}s")
    return info


# --------------------------------------------------------------------------- process sampling


def _children(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
    return out


def _status(pid: int) -> dict | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    info = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "Name":
            info["name"] = value.strip()
        elif key in ("VmHWM", "VmRSS"):
            info[key] = int(value.split()[0])  # kB
    return info


def _cpu_seconds(pid: int, children: bool = False) -> float:
    """utime+stime of a process (plus its reaped children's with ``children``) from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLK_TCK


def _busy_cpu_seconds() -> float:
    """CPU time all CPUs of the machine spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def _used_bytes(path: str) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _dir_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


class TreeSampler:
    """Polls a process tree: peak RSS per process, peak RSS sum, open files, disk use, spool size."""

    def __init__(
        self,
        roots: list[int],
        interval: float,
        *,
        main_pid: int | None = None,
        watch_files: bool = False,
        spool: str | None = None,
        fs_paths=(),
    ):
        self.roots = roots
        self.interval = interval
        self.main_pid = main_pid
        self.watch_files = watch_files
        self.spool = spool
        self.fs = {}
        for p in fs_paths:  # one entry per file system
            dev = os.stat(p).st_dev
            self.fs.setdefault(dev, p)
        self.base_used = {dev: _used_bytes(p) for dev, p in self.fs.items()}
        self.peak_used_growth = 0
        self.main_hwm_kb = 0
        self.peak_sum_rss_kb = 0
        self.per_name_hwm_kb: dict[str, int] = {}
        self.cpu_by_pid: dict[int, tuple[str, float]] = {}  # last seen utime+stime of each process
        self.open_files: dict[str, int] = {}  # path -> largest size seen while open
        self.spool_peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _loop(self):
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                break

    def sample(self):
        seen, todo = set(), list(self.roots)
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            todo.extend(_children(pid))
        total = 0
        for pid in seen:
            st = _status(pid)
            if not st or "VmRSS" not in st:
                continue
            total += st["VmRSS"]
            name = st.get("name", "?")
            self.per_name_hwm_kb[name] = max(self.per_name_hwm_kb.get(name, 0), st.get("VmHWM", 0))
            self.cpu_by_pid[pid] = (name, _cpu_seconds(pid))
            if pid == self.main_pid:
                self.main_hwm_kb = max(self.main_hwm_kb, st.get("VmHWM", 0))
            if self.watch_files:
                self._files(pid)
        self.peak_sum_rss_kb = max(self.peak_sum_rss_kb, total)
        for dev, p in self.fs.items():
            with contextlib.suppress(OSError):
                self.peak_used_growth = max(self.peak_used_growth, _used_bytes(p) - self.base_used[dev])
        if self.spool:
            self.spool_peak = max(self.spool_peak, _dir_bytes(self.spool))
        self.samples += 1

    def cpu_by_name(self) -> dict:
        out: dict[str, float] = {}
        for name, cpu in self.cpu_by_pid.values():
            out[name] = round(out.get(name, 0.0) + cpu, 2)
        return dict(sorted(out.items()))

    def _files(self, pid: int):
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            return
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
                if not target.startswith("/") or target.startswith(("/dev/", "/proc/", "/sys/")):
                    continue
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if (st.st_mode & 0o170000) == 0o100000:  # regular file
                self.open_files[target] = max(self.open_files.get(target, 0), st.st_size)


# --------------------------------------------------------------------------- measured runs


def _older_than(path: str, epoch: float) -> bool:
    """A file that was there before the run (libpython being mapped, say) is not a temporary file of it."""
    try:
        return os.stat(path).st_mtime < epoch
    except OSError:
        return False  # gone since: made and removed during the run


def wait_rusage(proc: subprocess.Popen):
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru


class Runner:
    def __init__(self, pg: PostgresServer, work: Path, args, log):
        self.pg = pg
        self.work = work
        self.args = args
        self.log = log
        self.pg_dump = pg.tool("pg_dump")
        self.env = pg.client_env()
        self.collections = Path(args.collections).resolve()
        self.counter = 0
        self.postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])

    def _mark(self):
        return _busy_cpu_seconds(), _cpu_seconds(self.postmaster, children=True)

    def _account(self, mark, res):
        """Add the server's CPU (backends, reaped by the postmaster) and everything else's to ``res``."""
        time.sleep(0.3)  # let the postmaster reap the backend that served the dump
        busy, server = _busy_cpu_seconds() - mark[0], _cpu_seconds(self.postmaster, children=True) - mark[1]
        res["server_cpu"] = round(server, 2)
        res["other_cpu"] = round(max(0.0, busy - server - res["cpu"]), 2)  # other processes on the machine
        return res

    def _conn(self, db):
        p = self.pg.conn_params()
        return [
            "--no-password",
            f"--host={p['host']}",
            f"--port={p['port']}",
            f"--username={p['user']}",
            f"--dbname={db}",
        ]

    def _fresh_dir(self, name):
        self.counter += 1
        d = self.work / f"{name}-{self.counter}"
        d.mkdir(parents=True)
        return d

    # (a)
    def bare_dump(self, db):
        argv = [self.pg_dump, "-Fc", "-Z0", *self._conn(db)]
        err = self.work / "a.err"
        with open(err, "wb") as ferr:
            mark = self._mark()
            t0 = time.monotonic()
            proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=ferr, stdin=subprocess.DEVNULL, env=self.env
            )
            sampler = TreeSampler([proc.pid], self.args.sample_ms / 1000).start()
            ru = wait_rusage(proc)
            wall = time.monotonic() - t0
            sampler.stop()
        if proc.returncode != 0:
            raise RuntimeError(f"(a) pg_dump exited {proc.returncode}: {err.read_text()[-2000:]}")
        return self._account(
            mark,
            {
                "wall": wall,
                "cpu": ru.ru_utime + ru.ru_stime,
                "peak_rss_mb": ru.ru_maxrss / 1024,
                "cpu_by_process": sampler.cpu_by_name(),
            },
        )

    # (b)
    def gzip_dump(self, db):
        out_dir = self._fresh_dir("gzip")
        out = out_dir / f"{db}.sql.gz"
        errs = [self.work / "b1.err", self.work / "b2.err"]
        with open(out, "wb") as fout, open(errs[0], "wb") as e1, open(errs[1], "wb") as e2:
            mark = self._mark()
            t0 = time.monotonic()
            dump = subprocess.Popen(
                [self.pg_dump, *self._conn(db)],
                stdout=subprocess.PIPE,
                stderr=e1,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
            gz = subprocess.Popen(["gzip", "-6"], stdin=dump.stdout, stdout=fout, stderr=e2)
            dump.stdout.close()  # gzip holds the read end: pg_dump gets SIGPIPE if gzip dies
            sampler = TreeSampler([dump.pid, gz.pid], self.args.sample_ms / 1000).start()
            ru_gz = wait_rusage(gz)
            ru_dump = wait_rusage(dump)
            wall = time.monotonic() - t0
            sampler.stop()
        if dump.returncode != 0 or gz.returncode != 0:
            raise RuntimeError(
                f"(b) pg_dump exited {dump.returncode}, gzip exited {gz.returncode}: "
                f"{errs[0].read_text()[-1000:]} {errs[1].read_text()[-1000:]}"
            )
        size = out.stat().st_size
        shutil.rmtree(out_dir)
        return self._account(
            mark,
            {
                "wall": wall,
                "cpu": ru_gz.ru_utime + ru_gz.ru_stime + ru_dump.ru_utime + ru_dump.ru_stime,
                "cpu_by_process": {
                    "gzip": round(ru_gz.ru_utime + ru_gz.ru_stime, 2),
                    "pg_dump": round(ru_dump.ru_utime + ru_dump.ru_stime, 2),
                },
                "stored_size": size,
            },
        )

    def _module_args(self, db, storage, spool, extra=None):
        p = self.pg.conn_params()
        args = {
            "job": f"bench-{db}",
            "source": {
                "engine": "postgresql",
                "host": p["host"],
                "port": p["port"],
                "user": p["user"],
                "password": p["password"],
                "database": db,
            },
            "storage": {"type": "local", "path": str(storage)},
            "spool_dir": str(spool),
        }
        args.update(self.args.module_extra)
        args.update(extra or {})
        return args

    # (c)
    def module(self, db, watch=True, extra=None):
        run_dir = self._fresh_dir("module")
        storage, spool = run_dir / "storage", run_dir / "spool"
        storage.mkdir()
        spool.mkdir()
        args = self._module_args(db, storage, spool, extra)
        args.update({"_ansible_check_mode": False, "_ansible_diff": False, "_ansible_verbosity": 0})
        args_file = run_dir / "args.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        args_file.chmod(0o600)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.collections)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        env.setdefault("LANG", "C.UTF-8")
        out_f, err_f = run_dir / "stdout", run_dir / "stderr"
        with open(out_f, "wb") as fo, open(err_f, "wb") as fe:
            mark = self._mark()
            started_epoch = time.time()
            t0 = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-m", MODULE, str(args_file)],
                stdin=subprocess.DEVNULL,
                stdout=fo,
                stderr=fe,
                env=env,
                cwd=run_dir,
            )
            sampler = TreeSampler(
                [proc.pid],
                self.args.sample_ms / 1000,
                main_pid=proc.pid,
                watch_files=watch,
                spool=str(spool) if watch else None,
                fs_paths=(str(storage), str(spool), tempfile.gettempdir()) if watch else (),
            )
            sampler.start()
            ru = wait_rusage(proc)
            wall = time.monotonic() - t0
            sampler.stop()
        text = out_f.read_text(errors="replace")
        try:
            result = json.loads(text[text.find("{") :])
        except ValueError:
            result = None
        if proc.returncode != 0 or not result or result.get("failed"):
            msg = (result or {}).get("msg") or text[-2000:] + err_f.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"(c) module failed (rc {proc.returncode}): {msg}")
        man = result["manifest"]
        artifact = result["path"]
        big_open = {p: s for p, s in sampler.open_files.items() if s >= 8 * MB}
        others = {
            p: s
            for p, s in big_open.items()
            if not Path(p).name.startswith("." + Path(artifact).name + ".partial") and p != artifact
            and not _older_than(p, started_epoch)
        }
        disk_extra = sampler.peak_used_growth - man["stored_size"]
        tolerance = max(64 * MB, man["stored_size"] // 10)
        res = {
            "wall": wall,
            "manifest": man,
            "module_duration_seconds": man.get("duration_seconds"),
            "cpu": ru.ru_utime + ru.ru_stime,  # module + the children it reaped (pg_dump, zstd)
            "raw_size": man["raw_size"],
            "stored_size": man["stored_size"],
            "compression": man.get("compression"),
            "module_hwm_mb": sampler.main_hwm_kb / 1024,
            "tree_max_single_mb": ru.ru_maxrss / 1024,
            "tree_peak_sum_rss_mb": sampler.peak_sum_rss_kb / 1024,
            "per_process_hwm_mb": {k: round(v / 1024, 1) for k, v in sorted(sampler.per_name_hwm_kb.items())},
            "cpu_by_process": sampler.cpu_by_name(),
            "samples": sampler.samples,
        }
        self._account(mark, res)
        if watch:
            res["tempfiles"] = {
                "large_open_files": {p: s for p, s in big_open.items()},
                "other_large_open_files": others,
                "spool_peak_bytes": sampler.spool_peak,
                "disk_used_growth_peak": sampler.peak_used_growth,
                "disk_growth_beyond_artifact": disk_extra,
                "ok": not others and sampler.spool_peak < MB and disk_extra <= tolerance,
            }
        shutil.rmtree(run_dir)
        return res

    # (d)
    def playbook(self, db):
        run_dir = self._fresh_dir("playbook")
        storage, spool = run_dir / "storage", run_dir / "spool"
        storage.mkdir()
        spool.mkdir()
        args = self._module_args(db, storage, spool)
        (run_dir / "vars.json").write_text(json.dumps({"bench_args": args}))
        (run_dir / "vars.json").chmod(0o600)
        (run_dir / "inventory.ini").write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        )
        (run_dir / "bench.yml").write_text(
            "- name: Benchmark the dump module\n"
            "  hosts: localhost\n"
            "  gather_facts: false\n"
            "  tasks:\n"
            "    - name: Dump\n"
            "      songmetrix.backup.dump:\n" + "".join(f'        {k}: "{{{{ bench_args.{k} }}}}"\n' for k in args)
        )
        playbook_bin = Path(sys.executable).parent / "ansible-playbook"
        if not playbook_bin.exists():
            playbook_bin = shutil.which("ansible-playbook")
            if not playbook_bin:
                raise RuntimeError("(d) ansible-playbook not found")
        env = dict(os.environ)
        env.update(
            {
                "ANSIBLE_COLLECTIONS_PATH": str(self.collections),
                "ANSIBLE_CONFIG": str(run_dir / "ansible.cfg"),
                "ANSIBLE_LOCAL_TEMP": str(run_dir / "atmp"),
                "ANSIBLE_NOCOLOR": "1",
            }
        )
        env.setdefault("LANG", "C.UTF-8")
        (run_dir / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = false\n")
        t0 = time.monotonic()
        proc = subprocess.run(
            [
                str(playbook_bin),
                "-i",
                str(run_dir / "inventory.ini"),
                "-e",
                f"@{run_dir / 'vars.json'}",
                str(run_dir / "bench.yml"),
            ],
            cwd=run_dir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"(d) ansible-playbook exited {proc.returncode}:\n{proc.stdout[-3000:]}")
        manifests = list(storage.rglob("*.manifest.json"))
        stored = json.loads(manifests[0].read_text())["stored_size"] if manifests else None
        shutil.rmtree(run_dir)
        return {"wall": wall, "stored_size": stored}


def best(runs: list[dict], key="wall") -> dict:
    return min(runs, key=lambda r: r[key])


def tool_version(argv) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    return "?"


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=700, help="database size (pg_database_size), default 700")
    ap.add_argument(
        "--small-pct",
        type=float,
        default=10.0,
        help="size of the second database for the memory comparison, %% of --size-mb (default 10)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="measure (a)-(c) N times, keep the best (default 3)")
    ap.add_argument("--skip-playbook", action="store_true", help="do not run (d)")
    ap.add_argument("--sample-ms", type=int, default=50, help="/proc sampling interval (default 50 ms)")
    ap.add_argument(
        "--collections",
        default=str(REPO_ROOT / "collections"),
        help="collections dir to import the module from (to try a modified copy)",
    )
    ap.add_argument(
        "--module-arg",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="extra module option, e.g. compression_threads=1 (value parsed as JSON when possible)",
    )
    ap.add_argument("--workdir", default=None, help="where the server and the outputs go (default: a temp dir)")
    ap.add_argument("--json", default=str(OUTPUT_DIR / "latest.json"), help="where to write the figures")
    args = ap.parse_args(argv)
    extra = {}
    for item in args.module_arg:
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except ValueError:
            extra[key] = value
    args.module_extra = extra
    return args


def time_signing(manifest: dict, rounds: int = 1000) -> float:
    """Seconds one signature of ``manifest`` costs: what a signed dump adds to an unsigned one."""
    sys.path.insert(0, str(REPO_ROOT / "collections"))
    from ansible_collections.songmetrix.backup.plugins.module_utils import manifest as manifests
    from ansible_collections.songmetrix.backup.plugins.module_utils.signing import Keyring

    keyring = Keyring({"key": SIGNING_KEY})
    t0 = time.perf_counter()
    for _ in range(rounds):
        manifests.signed_bytes(keyring, manifest)
    return (time.perf_counter() - t0) / rounds


def fmt_mb(n):
    return "-" if n is None else f"{n / MB:,.1f} MB"


def row(name, r):
    return (
        f"{name:<40}{r['wall']:7.2f}s{r['cpu']:7.2f}s{r['server_cpu']:7.2f}s{r['other_cpu']:7.2f}s"
        f"{fmt_mb(r.get('stored_size')):>12}"
    )


def verdict(ok):
    return "PASS" if ok else "MISS"


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.monotonic()

    def log(msg):
        print(msg, flush=True)

    work = Path(tempfile.mkdtemp(prefix="sm-bench-", dir=args.workdir))
    os.chmod(work, 0o755)  # the postgres OS user must reach the server dir below
    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        },
        "options": {
            "size_mb": args.size_mb,
            "small_pct": args.small_pct,
            "repeat": args.repeat,
            "module_extra": args.module_extra,
            "collections": args.collections,
        },
    }
    try:
        log(f"bench: starting PostgreSQL in {work}")
        with PostgresServer(fast=True, base_dir=work) as pg:
            report["versions"] = {
                "server": pg.version,
                "pg_dump": tool_version([pg.tool("pg_dump"), "--version"]),
                "zstd": tool_version(["zstd", "--version"]),
                "gzip": tool_version(["gzip", "--version"]),
            }
            log(f"bench: building databases ({args.size_mb} MB and {args.small_pct:g}% of it)")
            big = build_database(pg, "bench_big", args.size_mb * MB, log)
            small = build_database(pg, "bench_small", int(args.size_mb * MB * args.small_pct / 100), log)
            report["databases"] = {"big": big, "small": small}
            runner = Runner(pg, work, args, log)
            log("bench: warm-up dumps (unmeasured)")
            runner.bare_dump("bench_big")
            runner.bare_dump("bench_small")
            runs = {"a": [], "b": [], "c": [], "c_signed": [], "c_small": []}
            report["load_before"] = [round(x, 2) for x in os.getloadavg()]
            for i in range(args.repeat):
                log(f"bench: round {i + 1}/{args.repeat}")
                r = runner.bare_dump("bench_big")
                runs["a"].append(r)
                log(f"  (a) pg_dump -Fc -Z0 > /dev/null   {r['wall']:7.2f}s")
                r = runner.gzip_dump("bench_big")
                runs["b"].append(r)
                log(f"  (b) pg_dump | gzip -6 > file      {r['wall']:7.2f}s")
                r = runner.module("bench_big")
                runs["c"].append(r)
                log(f"  (c) dump module, one process      {r['wall']:7.2f}s")
                r = runner.module("bench_big", watch=False, extra={"signing": {"key": SIGNING_KEY}})
                runs["c_signed"].append(r)
                log(f"  (c') dump module, signed           {r['wall']:7.2f}s")
            r = runner.module("bench_small")
            runs["c_small"].append(r)
            log(f"  (c) dump module, small database   {r['wall']:7.2f}s")
            if not args.skip_playbook:
                r = runner.playbook("bench_big")
                runs["d"] = [r]
                log(f"  (d) ansible-playbook              {r['wall']:7.2f}s")
        report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    except (ServerError, RuntimeError, OSError) as exc:
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)

    a, b, c, cs = best(runs["a"]), best(runs["b"]), best(runs["c"]), runs["c_small"][0]
    cz = best(runs["c_signed"])
    signing_seconds = time_signing(cz["manifest"])
    signing_share = signing_seconds / c["wall"]
    d = runs.get("d", [None])[0]
    c_a, c_b = c["wall"] / a["wall"], c["wall"] / b["wall"]
    med = {k: statistics.median(r["wall"] for r in runs[k]) for k in "abc"}
    module_rss = max(r["module_hwm_mb"] for r in runs["c"])
    temp_ok = all(r["tempfiles"]["ok"] for r in runs["c"] + runs["c_small"])
    checks = {
        "c/a <= 1.25": (round(c_a, 3), c_a <= TARGETS["c_over_a"]),
        "c/b <= 0.35": (round(c_b, 3), c_b <= TARGETS["c_over_b"]),
        "stored (c) <= stored (b)": (
            f"{c['stored_size'] / MB:.1f} vs {b['stored_size'] / MB:.1f} MB",
            c["stored_size"] <= b["stored_size"],
        ),
        "module peak RSS <= 100 MB": (round(module_rss, 1), module_rss <= TARGETS["module_peak_rss_mb"]),
        "module RSS flat (big vs small db)": (
            [round(module_rss, 1), round(cs["module_hwm_mb"], 1)],
            module_rss <= cs["module_hwm_mb"] * 1.2 + 5,
        ),
        "no dump-sized temporary file": (temp_ok, temp_ok),
        "signing < 1% of (c)": (f"{signing_share:.2e}", signing_share < TARGETS["signing_share"]),
    }
    report.update(
        runs=runs,
        best={"a": a, "b": b, "c": c, "c_signed": cz, "c_small": cs, "d": d},
        signing={"seconds_per_manifest": signing_seconds, "share_of_c": signing_share,
                 "signed_over_unsigned_wall": cz["wall"] / c["wall"]},
        ratios={
            "c_over_a": c_a,
            "c_over_b": c_b,
            "median_c_over_a": med["c"] / med["a"],
            "median_c_over_b": med["c"] / med["b"],
        },
        targets={k: {"value": v, "pass": ok} for k, (v, ok) in checks.items()},
        total_seconds=round(time.monotonic() - t_start, 1),
    )

    big_db, small_db = report["databases"]["big"], report["databases"]["small"]
    lines = [
        "",
        f"songmetrix.backup dump benchmark  ({report['host']['cpus']} CPUs, {report['host']['mem_gb']} GB RAM, "
        f"PostgreSQL {report['versions']['server']}, {report['versions']['zstd'].split(',')[0].strip('* ')})",
        f"database bench_big {fmt_mb(big_db['size_bytes'])} (pg_database_size), "
        f"bench_small {fmt_mb(small_db['size_bytes'])}; best of {args.repeat}; "
        f"module options extra: {args.module_extra or 'none (module defaults: zstd level 2, all cores)'}"
        + (
            "" if Path(args.collections).resolve() == REPO_ROOT / "collections" else f"; module from {args.collections}"
        ),
        "",
        f"{'run':<40}{'wall':>8}{'cpu':>8}{'server':>8}{'other':>8}{'stored':>12}",
        row("(a) pg_dump -Fc -Z0 > /dev/null", a),
        row("(b) pg_dump | gzip -6 > file", b),
        row("(c) module, one process", c),
        row("(c') module, signed manifest", cz),
        row("(c) module, small database", cs),
    ]
    if d:
        lines.append(
            f"{'(d) ansible-playbook end to end':<40}{d['wall']:7.2f}s{'-':>8}{'-':>8}{'-':>8}"
            f"{fmt_mb(d['stored_size']):>12}"
        )
    lines += [
        "  cpu: user+sys of the measured processes (c: module python + pg_dump + zstd + psql), seconds;",
        "  server: the PostgreSQL backends serving it; other: the rest of the machine during the run (noise)",
        "  (c) cpu by process (sampled): " + ", ".join(f"{k} {v}s" for k, v in c["cpu_by_process"].items()),
        f"  load average before the runs {report['load_before']}, after {report['load_after']}",
        "",
        f"raw dump (custom format, -Z0, as streamed): {fmt_mb(c['raw_size'])}; "
        f"zstd ratio {c['raw_size'] / c['stored_size']:.2f}x, gzip -6 (plain format) {fmt_mb(b['stored_size'])}",
        f"module's own time (manifest duration_seconds): "
        f"{c['module_duration_seconds']}s",
        f"signing: {signing_seconds * 1e6:.1f} us per manifest (Keyring.encode, HMAC-SHA256, in this process), "
        f"{signing_share:.2e} of (c); (c')/(c) wall {cz['wall'] / c['wall']:.3f} (noise of one dump to the next)",
        "",
        "memory (MB)                                   big db   small db",
        f"  module python process, peak RSS (VmHWM)   {c['module_hwm_mb']:8.1f} {cs['module_hwm_mb']:10.1f}",
        f"  largest single process in tree (ru_maxrss){c['tree_max_single_mb']:8.1f} {cs['tree_max_single_mb']:10.1f}",
        f"  whole tree, peak of summed VmRSS          {c['tree_peak_sum_rss_mb']:8.1f}"
        f" {cs['tree_peak_sum_rss_mb']:10.1f}",
        "  per process VmHWM: " + ", ".join(f"{k} {v}" for k, v in c["per_process_hwm_mb"].items()),
        "",
    ]
    tf = c["tempfiles"]
    lines += [
        "temporary files during (c): large open files of the tree: "
        + (", ".join(f"{Path(p).name} ({fmt_mb(s)})" for p, s in tf["large_open_files"].items()) or "none")
        + f"; spool_dir peak {tf['spool_peak_bytes']} bytes; disk use grew {fmt_mb(tf['disk_used_growth_peak'])} "
        f"at peak vs {fmt_mb(c['stored_size'])} stored",
        "",
        "targets (issue 2)",
    ]
    for name, (value, ok) in checks.items():
        lines.append(f"  {name:<36} {str(value):<22} {verdict(ok)}")
    if args.repeat > 1:
        lines.append(
            f"  (ratios above use the best of {args.repeat}; medians: c/a {med['c'] / med['a']:.3f}, "
            f"c/b {med['c'] / med['b']:.3f}; all rounds in the JSON)"
        )
    lines.append(f"\ntotal benchmark time {report['total_seconds']}s")
    print("\n".join(lines))

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
