#!/usr/bin/env python3
"""Fleet benchmark (issue 7): playbooks/backup.yml on 20 inventory hosts with forks 20, against 1 host.

    make bench-fleet                                  # = .venv/bin/python tests/bench/fleet.py --mode ssh
    .venv/bin/python tests/bench/fleet.py --mode local     # 20 ansible_connection=local aliases (quick)
    .venv/bin/python tests/bench/fleet.py --mode ssh       # 20 aliases over 3 chroot test hosts (root)

Both modes start a real PostgreSQL and MariaDB (tests/servers.py, the molecule scenario's test
data) and give the 20 inventory hosts one job each, in turn a PostgreSQL, a MariaDB and a files
job, each with its own job name and storage directory.

--mode ssh builds three Debian 12 test hosts exactly as molecule/default does
(molecule/default/files/testhosts.py: cached debootstrap tarball, sshd on 127.0.0.1 ports), runs
playbooks/install.yml on them from scratch (timed: the client tools, the runner venv) and then
backup.yml on the 3 hosts (timed), and puts the 20 inventory hosts over them as aliases (the
same 127.0.0.1:port, so Ansible makes 20 real SSH connections). --mode local runs the modules on
this machine (its client tools) without SSH.

Timed (wall clock, ansible-playbook's whole run): backup.yml on each of 3 single hosts with
--forks 1 (one per engine; their mean is "1 host"), then on all 20 with --forks 20. Reported:
20-host wall time, wall time per host (20-host time / 20), and the ratio of the 20-host time to
the 1-host time (the target: under 2x). Writes tests/bench/output/fleet-<mode>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "molecule" / "default" / "files"))

import testhosts  # noqa: E402  (molecule/default/files/testhosts.py)
from tests.servers import MariaDBServer, PostgresServer  # noqa: E402

OUTPUT_DIR = REPO_ROOT / "tests" / "bench" / "output"
ENGINES = ("postgresql", "mariadb", "files")
BASE_HOSTS = {"postgresql": "bench-pg", "mariadb": "bench-mariadb", "files": "bench-files"}
TARGET_RATIO = 2.0


def log(msg: str) -> None:
    print(f"[bench-fleet] {msg}", file=sys.stderr, flush=True)


def job_for(engine: str, name: str, pg, my, storage_root: str, files_path: str) -> dict:
    if engine == "postgresql":
        source = {"engine": "postgresql", **pg.conn_params(), "database": "appdb"}
    elif engine == "mariadb":
        source = {"engine": "mariadb", **my.conn_params(), "database": "shopdb"}
    else:
        source = {"engine": "files", "path": files_path}
    return {"name": name, "source": source, "storage": {"type": "local", "path": storage_root},
            "compression": "zstd", "verify": True}


def make_inventory(mode: str, count: int, pg, my, work: Path, instances: dict, key: str) -> dict:
    fleet = {}
    base = {}
    common = {"ansible_python_interpreter": sys.executable} if mode == "local" else {
        "ansible_user": "root",
        "ansible_private_key_file": key,
        "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR "
                                   "-o ControlMaster=auto -o ControlPersist=120s -o IdentitiesOnly=yes",
    }
    storage_root = str(work / "storage") if mode == "local" else "/var/backups/bench"
    files_path = str(REPO_ROOT / "roles") if mode == "local" else "/etc"
    for i in range(1, count + 1):
        engine = ENGINES[(i - 1) % len(ENGINES)]
        name = f"fleet-{i:02d}"
        hostvars = {"bench_engine": engine,
                    "songmetrix_backup_jobs": [job_for(engine, f"{engine}-{name}", pg, my, storage_root, files_path)]}
        if mode == "local":
            hostvars["ansible_connection"] = "local"
        else:
            hostvars.update(ansible_host="127.0.0.1", ansible_port=instances[BASE_HOSTS[engine]]["port"])
        fleet[name] = hostvars
    if mode == "ssh":
        for engine, name in BASE_HOSTS.items():
            job = job_for(engine, f"{engine}-base", pg, my, storage_root, files_path)
            base[name] = {"ansible_host": "127.0.0.1", "ansible_port": instances[name]["port"],
                          "songmetrix_backup_jobs": [job]}
    return {"all": {"vars": {**common, "backup_run_no_log": True, "songmetrix_backup_install_serial": "100%"},
                    "children": {"fleet": {"hosts": fleet}, "base": {"hosts": base}}}}


def playbook(inventory: Path, name: str, *args: str) -> float:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_HOST_KEY_CHECKING": "False",
           "LANG": os.environ.get("LANG", "C.UTF-8")}
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
            str(REPO_ROOT / "playbooks" / name), *args]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-3000:])
        raise SystemExit(f"{name} {' '.join(args)} failed with exit code {proc.returncode}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["ssh", "local"], default="ssh")
    parser.add_argument("--hosts", type=int, default=20)
    args = parser.parse_args()
    if args.mode == "ssh" and os.geteuid() != 0:
        raise SystemExit("--mode ssh needs root (chroots, mounts, namespaces); try --mode local")
    result = {"mode": args.mode, "hosts": args.hosts, "forks": args.hosts, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="sm-bench-fleet-") as tmp, PostgresServer() as pg, MariaDBServer() as my:
        work = Path(tmp)
        os.chmod(work, 0o755)
        pg.create_database("appdb")
        pg.psql(testhosts.PG_DATA, dbname="appdb")
        my.create_database("shopdb")
        my.sql(testhosts.MARIADB_DATA, database="shopdb")
        instances, key = {}, ""
        state = argparse.Namespace(state=str(work / "state"))
        try:
            if args.mode == "ssh":
                (work / "state").mkdir()
                key = str(work / "state" / "id")
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
                started = time.monotonic()
                testhosts.cmd_down(state)
                tarball = testhosts.ensure_rootfs()
                pub = [Path(key + ".pub").read_text()]
                for name in BASE_HOSTS.values():
                    instances[name] = testhosts.host_up(work / "state" / "hosts", name, tarball, pub)
                result["create_seconds"] = round(time.monotonic() - started, 1)
                log(f"3 test hosts up in {result['create_seconds']} s")
            inventory = work / "inventory.yml"
            inventory.write_text(json.dumps(make_inventory(args.mode, args.hosts, pg, my, work, instances, key)))
            if args.mode == "ssh":
                result["install_3_hosts_seconds"] = round(
                    playbook(inventory, "install.yml", "--limit", "base", "-f", "3"), 1)
                log(f"install.yml on 3 hosts from scratch: {result['install_3_hosts_seconds']} s")
                result["backup_3_hosts_seconds"] = round(
                    playbook(inventory, "backup.yml", "--limit", "base", "-f", "3"), 1)
                log(f"backup.yml on the 3 hosts: {result['backup_3_hosts_seconds']} s")
            else:
                playbook(inventory, "backup.yml", "--limit", "fleet-01", "-f", "1")  # warm-up (caches, pyc)
            singles = {}
            for i, engine in enumerate(ENGINES, start=1):
                singles[engine] = round(playbook(inventory, "backup.yml", "--limit", f"fleet-{i:02d}", "-f", "1"), 2)
                log(f"backup.yml on 1 host ({engine}), forks 1: {singles[engine]} s")
            one = sum(singles.values()) / len(singles)
            fleet = playbook(inventory, "backup.yml", "--limit", "fleet", "-f", str(args.hosts))
            log(f"backup.yml on {args.hosts} hosts, forks {args.hosts}: {fleet:.1f} s")
        finally:
            if args.mode == "ssh":
                testhosts.cmd_down(state)
    result.update(
        single_host_seconds=singles, single_host_mean_seconds=round(one, 2), fleet_seconds=round(fleet, 2),
        fleet_seconds_per_host=round(fleet / args.hosts, 2), fleet_to_single_ratio=round(fleet / one, 2),
        target_ratio=TARGET_RATIO,
    )
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUTPUT_DIR / f"fleet-{args.mode}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"\nbackup.yml, {args.mode}: 1 host {one:.1f} s; {args.hosts} hosts (forks {args.hosts}) {fleet:.1f} s "
          f"= {fleet / args.hosts:.2f} s per host; {args.hosts}-host run / 1-host run = {fleet / one:.2f}x "
          f"(target < {TARGET_RATIO}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
