"""Helpers shared by the engine tests: reading stored backups back with stock tools only."""

import glob
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
MODULE_PACKAGE = "ansible_collections.songmetrix.backup.plugins.modules"


def sha256sum(path):
    out = subprocess.run(["sha256sum", path], check=True, stdout=subprocess.PIPE).stdout.decode()
    return out.split()[0]


def decompress_cmd(path):
    if path.endswith(".zst"):
        return ["zstd", "-dc", path]
    if path.endswith(".gz"):
        return ["gzip", "-dc", path]
    if path.endswith(".lz4"):
        return ["lz4", "-dc", path]
    return ["cat", path]


def decompress_to(path, target):
    with open(target, "wb") as out:
        subprocess.run(decompress_cmd(path), check=True, stdout=out)
    return target


def stored_files(root):
    """Every file under a storage root, hidden partials included, relative to the root."""
    found = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


def load_manifest(storage_root, result):
    with open(os.path.join(storage_root, result["manifest_key"])) as handle:
        return json.load(handle)


def check_artifact_matches_manifest(storage_root, result):
    """The stored manifest equals the returned one and its sha256/size match the artifact on disk."""
    manifest = load_manifest(storage_root, result)
    assert manifest == result["manifest"]
    path = os.path.join(storage_root, result["artifact"])
    assert sha256sum(path) == manifest["sha256"]
    assert os.path.getsize(path) == manifest["stored_size"]
    assert os.stat(path).st_mode & 0o777 == 0o600
    return path, manifest


def start_module(name, args, tmp_path, env=None):
    """Start a module as Ansible would on a target (one process, JSON args file); returns Popen.

    ``env``: variables to set (over os.environ) for the module and its tools."""
    args_file = os.path.join(str(tmp_path), "%s-args-%d.json" % (name, time.time_ns()))
    with open(args_file, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    env = dict(os.environ, **(env or {}), PYTHONPATH=os.path.join(REPO, "collections"))
    return subprocess.Popen(
        [sys.executable, "-m", "%s.%s" % (MODULE_PACKAGE, name), args_file],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def children_of(pid):
    """PIDs of the direct children of ``pid``, with their command names."""
    result = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open("/proc/%s/comm" % entry) as handle:
                comm = handle.read().strip()
        except OSError:
            continue
        if int(fields[1]) == pid:
            result[int(entry)] = comm
    return result


def wait_for_child(pid, comm, argv_contains=None, timeout=60):
    """The first child of ``pid`` named ``comm`` (and with ``argv_contains`` in its argv)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for child, name in children_of(pid).items():
            if name != comm:
                continue
            try:
                argv = cmdline(child)
            except OSError:
                continue
            if argv_contains is None or argv_contains in argv:
                return child
        time.sleep(0.05)
    raise AssertionError("no %s child of %d appeared" % (comm, pid))


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        return handle.read().split(b"\0")


def one(pattern):
    matches = glob.glob(pattern, recursive=True)
    assert len(matches) == 1, matches
    return matches[0]
