#!/usr/bin/env python3
"""Test hosts and database servers for the molecule scenario (run by create.yml and destroy.yml).

Test hosts are Debian 12 chroots unpacked from a cached debootstrap tarball, each with its own
sshd on 127.0.0.1:<free port> started under `unshare --pid --fork --mount --uts --mount-proc`,
so that every process of a host lives in the host's PID namespace and dies with it.

    testhosts.py rootfs                          ensure the cached tarball, print its path
    testhosts.py up --state DIR --key PUB NAME.. unpack and start the hosts, print JSON (instances)
    testhosts.py down --state DIR                kill, unmount and remove every host under DIR
    testhosts.py servers-up --state DIR          start PostgreSQL and MariaDB with test data,
                                                 write DIR/servers.json and print it
    testhosts.py servers-down --state DIR        stop them and remove their data
    testhosts.py exec --state DIR NAME -- CMD..  run CMD inside a host's namespaces and chroot

Environment: SONGMETRIX_ROOTFS_CACHE (tarball cache, default ${XDG_CACHE_HOME:-~/.cache}/songmetrix-backup),
SONGMETRIX_DEBIAN_MIRROR (default http://deb.debian.org/debian).

Safety: a host's /dev is a small tmpfs with a few device nodes (never a bind mount of the machine's
/dev), and nothing is removed while anything is still mounted below the state directory.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SUITE = "bookworm"
VARIANT = "minbase"
# What a Debian 12 server has anyway (systemd for systemd-analyze and unit files, python3-apt for
# Ansible's apt module), plus sshd and cron for the recipe. The cache key includes this list.
INCLUDE = ["python3", "python3-apt", "openssh-server", "cron", "systemd", "ca-certificates"]
REPO_ROOT = Path(__file__).resolve().parents[3]
HOST_SSHD_CONFIG = "/etc/ssh/sshd_config.molecule"
DEV_NODES = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
             ("tty", 5, 0)]


def log(msg: str) -> None:
    print(f"[testhosts] {msg}", file=sys.stderr, flush=True)


def run(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], check=True, **kw)


# --------------------------------------------------------------------------- mounts and processes


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below path (this mount namespace), deepest first."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt == prefix or mnt.startswith(prefix + "/"):
                found.append(Path(mnt))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def umount_all(path: Path) -> None:
    for _attempt in range(5):
        points = mounts_under(path)
        if not points:
            return
        for mnt in points:
            if subprocess.run(["umount", str(mnt)], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
        time.sleep(0.2)
    left = mounts_under(path)
    if left:
        raise SystemExit(f"still mounted under {path}: {', '.join(map(str, left))}")


def processes_rooted_under(path: Path) -> list[int]:
    """PIDs whose root directory (chroot) is path or below it: every process of a test host."""
    prefix = str(path.resolve())
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            root = os.readlink(f"/proc/{entry}/root")
        except OSError:
            continue
        if root == prefix or root.startswith(prefix + "/"):
            pids.append(int(entry))
    return pids


def kill_hosts(hosts_dir: Path) -> None:
    """SIGKILL every process chrooted below hosts_dir and the unshare parents we recorded."""
    recorded = []
    for pid_file in hosts_dir.glob("*/unshare.pid"):
        with contextlib.suppress(ValueError, OSError):
            recorded.append(int(pid_file.read_text()))
    deadline = time.monotonic() + 20
    while True:
        pids = processes_rooted_under(hosts_dir) + [p for p in recorded if _alive_unshare(p)]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid in recorded:  # reap our own children (when up and down ran in one process)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > deadline:
            raise SystemExit(f"processes of the test hosts survive SIGKILL: {pids}")
        time.sleep(0.2)


def _alive_unshare(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "unshare"
    except OSError:
        return False


def remove_tree(path: Path) -> None:
    """rm -rf path, but only when nothing is mounted below it."""
    if not path.exists():
        return
    umount_all(path)
    if mounts_under(path):
        raise SystemExit(f"refusing to remove {path}: something is still mounted below it")
    shutil.rmtree(path)


# --------------------------------------------------------------------------- root file system


def cache_dir() -> Path:
    base = os.environ.get("SONGMETRIX_ROOTFS_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "songmetrix-backup"


def mirror() -> str:
    return os.environ.get("SONGMETRIX_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def rootfs_path() -> Path:
    key = json.dumps({"suite": SUITE, "variant": VARIANT, "include": sorted(INCLUDE), "arch": os.uname().machine})
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / f"debian-{SUITE}-{VARIANT}-{digest}.tar.zst"


def ensure_rootfs() -> Path:
    """The debootstrap tarball, built once (about a minute) and reused while the key is the same."""
    tarball = rootfs_path()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{tarball}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent run waits for the build, then reuses it
        if tarball.exists():
            log(f"cached root file system: {tarball}")
            return tarball
        build = tarball.with_name(tarball.name + ".build")
        remove_tree(build)  # a build that died half-way (debootstrap mounts proc and sys)
        log(f"debootstrap {SUITE} ({VARIANT}, {','.join(INCLUDE)}) from {mirror()}")
        started = time.monotonic()
        try:
            run(["debootstrap", f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}", SUITE, build, mirror()],
                stdout=subprocess.DEVNULL)
            umount_all(build)
            for leftover in (build / "var/cache/apt/archives").glob("*.deb"):
                leftover.unlink()
            for key in (build / "etc/ssh").glob("ssh_host_*"):
                key.unlink()  # every host gets its own
            partial = tarball.with_name(tarball.name + ".part")
            run(["tar", "--numeric-owner", "-C", build, "-I", "zstd -T0 -3 -q", "-cpf", partial, "."])
            partial.rename(tarball)
        finally:
            remove_tree(build)
        log(f"built {tarball} in {time.monotonic() - started:.0f}s")
        return tarball


# --------------------------------------------------------------------------- hosts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SSHD_CONFIG = """\
# Written by molecule/default/files/testhosts.py: sshd of a test host (port given with -p).
ListenAddress 127.0.0.1
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
MaxSessions 50
MaxStartups 100:30:200
LogLevel ERROR
"""


def prepare_root(root: Path, name: str, pubkeys: list[str]) -> None:
    (root / "etc/hostname").write_text(f"{name}\n")
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {name}\n::1 localhost ip6-localhost\n")
    resolv = Path("/etc/resolv.conf").read_text()  # follows a symlink to systemd-resolved's file
    resolv_target = root / "etc/resolv.conf"
    if resolv_target.is_symlink():
        resolv_target.unlink()
    resolv_target.write_text(resolv)
    ssh = root / "etc/ssh"
    for key in ssh.glob("ssh_host_*"):
        key.unlink()
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", ssh / "ssh_host_ed25519_key"])
    (root / HOST_SSHD_CONFIG.lstrip("/")).write_text(SSHD_CONFIG)
    dot_ssh = root / "root/.ssh"
    dot_ssh.mkdir(mode=0o700, exist_ok=True)
    auth = dot_ssh / "authorized_keys"
    auth.write_text("".join(k.strip() + "\n" for k in pubkeys))
    auth.chmod(0o600)
    (root / "run/sshd").mkdir(parents=True, exist_ok=True)
    # Package scripts must not try to start services (there is no init): Debian's policy-rc.d.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)


def mirror_trust(root: Path) -> None:
    """The machine's own CA certificates (e.g. a TLS-inspecting egress proxy's) into the host.

    Like resolv.conf, part of the test machine's network rather than of the host under test:
    without them apt over https and pip inside the hosts fail where the machine succeeds.
    pip gets the system bundle through /etc/pip.conf (a venv's pip would use its own otherwise).
    """
    extra = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
    if not extra:
        return
    target = root / "usr/local/share/ca-certificates"
    target.mkdir(parents=True, exist_ok=True)
    for cert in extra:
        shutil.copyfile(cert, target / cert.name)
    run(["chroot", root, "update-ca-certificates"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")


def mount_dev(root: Path) -> None:
    """A minimal /dev: tmpfs with the usual nodes, a private devpts and /dev/shm."""
    dev = root / "dev"
    dev.mkdir(exist_ok=True)
    run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=4m,nosuid", "tmpfs", dev])
    for node, major, minor in DEV_NODES:
        os.mknod(dev / node, 0o666 | 0o020000, os.makedev(major, minor))
        os.chmod(dev / node, 0o666)
    (dev / "pts").mkdir()
    run(["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620", "devpts", dev / "pts"])
    os.symlink("pts/ptmx", dev / "ptmx")
    (dev / "shm").mkdir()
    run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=64m,nosuid,nodev", "tmpfs", dev / "shm"])
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, dev / link)


def start_sshd(host_dir: Path, name: str) -> int:
    """Start the host's sshd in new PID/mount/UTS namespaces; return its port."""
    root = host_dir / "root"
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    script = 'hostname "$0" && exec chroot "$1" /usr/sbin/sshd -D -e -f "$2" -p "$3"'
    last = ""
    for _attempt in range(5):
        port = free_port()
        log_file = open(host_dir / "sshd.log", "ab")
        proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--uts", f"--mount-proc={root}/proc",
             "/bin/sh", "-c", script, name, str(root), HOST_SSHD_CONFIG, str(port)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, env=env, start_new_session=True,
        )
        log_file.close()
        (host_dir / "unshare.pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.settimeout(3)
                if s.recv(4).startswith(b"SSH-"):
                    (host_dir / "port").write_text(f"{port}\n")
                    return port
            time.sleep(0.1)
        last = (host_dir / "sshd.log").read_text(errors="replace")[-2000:]
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kill_hosts(host_dir.parent)  # only this host can have processes at this point of up()
    raise SystemExit(f"sshd of {name} did not start:\n{last}")


def make_hosts_dir(hosts_dir: Path) -> None:
    """The hosts live on a tmpfs (unless SONGMETRIX_MOLECULE_TMPFS=0): unpacking, apt and pip
    inside the hosts, and removing them (an unmount instead of deleting ~2 GB of small files)
    do not wait for the disk. About 0.7 GB of memory per converged host."""
    hosts_dir.mkdir(parents=True, exist_ok=True)
    if use_tmpfs() and not mounts_under(hosts_dir):
        size = os.environ.get("SONGMETRIX_MOLECULE_TMPFS_SIZE", "8g")
        run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "songmetrix-molecule", hosts_dir])


def host_up(hosts_dir: Path, name: str, tarball: Path, pubkeys: list[str]) -> dict:
    host_dir = hosts_dir / name
    root = host_dir / "root"
    make_hosts_dir(hosts_dir)
    root.mkdir(parents=True)
    run(["tar", "--numeric-owner", "-C", root, "-I", "zstd -q", "-xpf", tarball])
    prepare_root(root, name, pubkeys)
    mount_dev(root)
    mirror_trust(root)
    port = start_sshd(host_dir, name)
    log(f"{name}: sshd on 127.0.0.1:{port}, root {root}")
    return {"instance": name, "address": "127.0.0.1", "port": port, "user": "root", "root": str(root)}


def use_tmpfs() -> bool:
    return os.environ.get("SONGMETRIX_MOLECULE_TMPFS", "1") != "0"


def cmd_up(args) -> None:
    hosts_dir = Path(args.state) / "hosts"
    cmd_down(args)  # whatever a previous run left behind
    tarball = ensure_rootfs()
    make_hosts_dir(hosts_dir)
    pubkeys = [Path(k).read_text() for k in args.key]
    instances = [host_up(hosts_dir, name, tarball, pubkeys) for name in args.names]
    print(json.dumps(instances))


def cmd_down(args) -> None:
    hosts_dir = Path(args.state) / "hosts"
    if not hosts_dir.exists():
        return
    kill_hosts(hosts_dir)
    remove_tree(hosts_dir)
    log(f"removed {hosts_dir}")


def cmd_exec(args) -> None:
    """Run a command in a host's namespaces (PID, mount, UTS) and chroot, like its sshd's children."""
    host_dir = Path(args.state) / "hosts" / args.name
    unshare_pid = int((host_dir / "unshare.pid").read_text())
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    target = children[0]
    argv = ["nsenter", "-t", target, "--pid", "--mount", "--uts", "--root", "--wdns=/", *args.command]
    os.execvp(argv[0], argv)


def cmd_rootfs(_args) -> None:
    print(ensure_rootfs())


# --------------------------------------------------------------------------- database servers

PG_DATA = """
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, created timestamptz DEFAULT now());
INSERT INTO customers (id, name) SELECT i, 'customer ' || i FROM generate_series(1, 5000) AS i;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers (id), total numeric(10, 2));
INSERT INTO orders (customer_id, total) SELECT 1 + i % 5000, (i % 997) / 10.0 FROM generate_series(1, 20000) AS i;
"""

MARIADB_DATA = """
CREATE TABLE products (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, price DECIMAL(10, 2));
INSERT INTO products (id, name, price) SELECT seq, CONCAT('product ', seq), seq / 7 FROM seq_1_to_3000;
"""


def cmd_servers_up(args) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    from tests.servers import MariaDBServer, PostgresServer  # the repository's test helpers

    state = Path(args.state)
    cmd_servers_down(args)
    info = {}
    info_file = state / "servers.json"
    # Temp dirs below /tmp (tests/servers.py: the postgres OS user must reach its data dir).
    pg = PostgresServer()
    my = MariaDBServer()
    try:
        pg.setup()
        info["postgresql"] = {"tmp": str(pg.tmp), "data_dir": str(pg.data_dir), "bin_dir": str(pg.bin_dir)}
        _write_json(info_file, info)
        pg.create_database("appdb")
        pg.psql(PG_DATA, dbname="appdb")
        my.setup()
        info["mariadb"] = {"tmp": str(my.tmp), "pid_file": str(my.tmp / "mariadbd.pid")}
        _write_json(info_file, info)
        my.create_database("shopdb")
        my.sql(MARIADB_DATA, database="shopdb")
    except BaseException:
        cmd_servers_down(args)
        pg.cleanup()
        my.cleanup()
        raise
    info["postgresql"].update(pg.conn_params(), database="appdb", version=pg.version)
    info["mariadb"].update(my.conn_params(), database="shopdb", version=my.version, socket=my.socket)
    _write_json(info_file, info)
    log(f"PostgreSQL {pg.version} on 127.0.0.1:{pg.port}, MariaDB {my.version} on 127.0.0.1:{my.port}")
    print(json.dumps(info))


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.chmod(0o600)


def cmd_servers_down(args) -> None:
    """Stop the servers recorded in servers.json (also a half-started set) and remove their dirs."""
    info_file = Path(args.state) / "servers.json"
    if not info_file.exists():
        return
    info = json.loads(info_file.read_text())
    pg = info.get("postgresql", {})
    if pg.get("data_dir") and Path(pg["data_dir"], "postmaster.pid").exists():
        subprocess.run(["runuser", "-u", "postgres", "--", f"{pg['bin_dir']}/pg_ctl", "-D", pg["data_dir"],
                        "-m", "immediate", "-w", "stop"], capture_output=True, check=False, cwd="/")
    if info.get("mariadb", {}).get("pid_file"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(Path(info["mariadb"]["pid_file"]).read_text())
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                os.kill(pid, 0)  # raises once it is gone
                time.sleep(0.1)
    for server in ("postgresql", "mariadb"):
        tmp = info.get(server, {}).get("tmp")
        if tmp and Path(tmp).name.startswith("sm-"):
            shutil.rmtree(tmp, ignore_errors=True)
    info_file.unlink()
    log("stopped the database servers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("rootfs").set_defaults(func=cmd_rootfs)
    p = sub.add_parser("up")
    p.add_argument("--state", required=True)
    p.add_argument("--key", action="append", required=True, help="public key file for root (repeatable)")
    p.add_argument("names", nargs="+")
    p.set_defaults(func=cmd_up)
    for name, func in (("down", cmd_down), ("servers-up", cmd_servers_up), ("servers-down", cmd_servers_down)):
        p = sub.add_parser(name)
        p.add_argument("--state", required=True)
        p.set_defaults(func=func)
    p = sub.add_parser("exec")
    p.add_argument("--state", required=True)
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)
    args = parser.parse_args()
    if getattr(args, "command", None) and args.command[0] == "--":
        args.command = args.command[1:]
    args.func(args)


if __name__ == "__main__":
    main()
