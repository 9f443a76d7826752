"""Run one of the collection's modules the way Ansible runs it on a target: one process,
JSON arguments in a file, one JSON result on stdout.

    res = run_module("dump", {"job": "j", "source": {...}, "storage": {...}})
    assert res.rc == 0, res.describe()
    res.result["manifest"]["sha256"]

The module is imported from this checkout (PYTHONPATH=<repo>/collections), with the Python
running the tests (sys.executable) unless ``python=`` says otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS_DIR = REPO_ROOT / "collections"


def ansible_playbook() -> str:
    """The ansible-playbook of the venv running the tests (not resolved: a venv's bin/ is sys.executable's)."""
    import shutil

    import pytest

    found = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"ansible-playbook not found next to {sys.executable}; install requirements.txt in this venv")
    return found
MODULE_PACKAGE = "ansible_collections.songmetrix.backup.plugins.modules"

__all__ = ["COLLECTIONS_DIR", "REPO_ROOT", "ModuleResult", "module_env", "run_module"]


@dataclass
class ModuleResult:
    rc: int
    result: dict | None  # the parsed JSON result, None when stdout held no JSON object
    stdout: str
    stderr: str
    duration: float = 0.0  # wall seconds
    max_rss_kb: int = 0  # peak resident set size of the module process (ru_maxrss, KiB)
    argv: list = field(default_factory=list)
    args: dict = field(default_factory=dict)  # ANSIBLE_MODULE_ARGS as written
    timed_out: bool = False

    @property
    def failed(self) -> bool:
        return self.rc != 0 or self.result is None or bool(self.result.get("failed"))

    @property
    def msg(self) -> str:
        return (self.result or {}).get("msg", "")

    @property
    def warnings(self) -> list:
        """The warning texts (ansible-core 2.19+ returns each as a structured summary)."""
        out = []
        for w in (self.result or {}).get("warnings") or []:
            out.append(w if isinstance(w, str) else (w.get("event") or {}).get("msg") or w.get("msg") or json.dumps(w))
        return out

    def describe(self) -> str:
        """Everything useful for an assertion message."""
        return (
            f"module rc={self.rc} timed_out={self.timed_out} duration={self.duration:.2f}s\n"
            f"result={json.dumps(self.result, indent=2, default=str) if self.result is not None else None}\n"
            f"stdout={self.stdout[-4000:]!r}\nstderr={self.stderr[-4000:]!r}"
        )


def module_env(env: dict | None = None) -> dict:
    """os.environ + PYTHONPATH=<repo>/collections (first) + ``env`` overrides (None values remove)."""
    out = dict(os.environ)
    pp = [str(COLLECTIONS_DIR)]
    if out.get("PYTHONPATH"):
        pp.append(out["PYTHONPATH"])
    out["PYTHONPATH"] = os.pathsep.join(pp)
    out.setdefault("LANG", "C.UTF-8")
    for k, v in (env or {}).items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = str(v)
    return out


def _parse_result(stdout: str) -> dict | None:
    text = stdout.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        # Tolerate noise before the JSON document (AnsibleModule prints exactly one object last).
        start = text.rfind("\n{")
        if start < 0:
            return None
        try:
            value = json.loads(text[start + 1:])
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def run_module(
    name: str,
    args: dict,
    check_mode: bool = False,
    env: dict | None = None,
    timeout: float = 600,
    *,
    python: str | None = None,
    cwd: str | os.PathLike | None = None,
    extra_internal_args: dict | None = None,
) -> ModuleResult:
    """Run songmetrix.backup.<name> with ``args``; never raises on module failure."""
    module_args = dict(args)
    module_args["_ansible_check_mode"] = bool(check_mode)
    module_args.setdefault("_ansible_diff", False)
    module_args.setdefault("_ansible_verbosity", 0)
    if extra_internal_args:
        module_args.update(extra_internal_args)
    payload = {"ANSIBLE_MODULE_ARGS": module_args}

    fd, args_path = tempfile.mkstemp(prefix=f"sm-{name}-args-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f)
        argv = [python or sys.executable, "-m", f"{MODULE_PACKAGE}.{name}", args_path]
        return _run(argv, module_env(env), timeout, cwd, module_args)
    finally:
        os.unlink(args_path)


def _run(argv, env, timeout, cwd, module_args) -> ModuleResult:
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,  # so a timeout kills the module and its dump tools together
    )
    chunks = {"out": [], "err": []}

    def drain(stream, key):
        for block in iter(lambda: stream.read(65536), b""):
            chunks[key].append(block)
        stream.close()

    readers = [
        threading.Thread(target=drain, args=(proc.stdout, "out"), daemon=True),
        threading.Thread(target=drain, args=(proc.stderr, "err"), daemon=True),
    ]
    for t in readers:
        t.start()

    timed_out = threading.Event()

    def kill_group():
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill_group)
    timer.start()
    try:
        # wait4 reaps the child and reports its own peak RSS (not the whole test process's children).
        _, status, rusage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join(timeout=30)
    duration = time.monotonic() - start
    stdout = b"".join(chunks["out"]).decode("utf-8", errors="replace")
    stderr = b"".join(chunks["err"]).decode("utf-8", errors="replace")
    return ModuleResult(
        rc=proc.returncode,
        result=_parse_result(stdout),
        stdout=stdout,
        stderr=stderr,
        duration=duration,
        max_rss_kb=rusage.ru_maxrss,
        argv=list(argv),
        args=module_args,
        timed_out=timed_out.is_set(),
    )
