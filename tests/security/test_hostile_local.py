"""Hostile local users: another user of the backup host (here `nobody`, a real second uid) attacks
the host lock and a files source while root runs the backups.

- The host lock: a lock folder the attacker created, a folder others may write to, a lock file
  swapped for a symlink to a root-only 0600 file, a lock file of another user. Each is refused with
  a message naming lock.dir or the file, and the root-only file keeps its content (the old code
  truncated it to 0 bytes through the symlink).
- The files source: a file swapped for a symlink to a root-only secret between the walk's lstat and
  its opening, a symlink swapped back to a file before readlink (the old code failed the run with
  `Invalid argument`), a directory swapped for a symlink to a root-only folder. Driven
  deterministically by a hook at the moment of the swap, and by a real `nobody` process swapping in
  a loop while a bounded number of backups run: the secret is never stored and no run fails.
"""

from __future__ import annotations

import builtins
import io
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import source_files
from ansible_collections.songmetrix.backup.plugins.module_utils.job_lock import HostLock
from ansible_collections.songmetrix.backup.plugins.module_utils.source_files import FilesSource
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_local import LocalStorage

SECRET = b"root-only secret: do not store, do not truncate\n" * 4
NOBODY = pwd.getpwnam("nobody")
JOB = "hostile"
# The attacker's Python: the system one (the test venv's is not readable by other users here).
OTHER_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second user (nobody)")


def as_nobody(code: str, wait: bool = True):
    """Run ``code`` (Python) as the user nobody, a real second uid without any of root's groups."""
    argv = [OTHER_PYTHON, "-c", textwrap.dedent(code)]
    kwargs = dict(user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[], cwd="/")
    if not wait:
        return subprocess.Popen(argv, **kwargs)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, **kwargs)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def shared():
    """A folder every user can traverse (pytest's own tmp is 0700 root), with a root-only secret."""
    base = Path(tempfile.mkdtemp(prefix="songmetrix-hostile-", dir="/tmp"))
    os.chmod(base, 0o755)
    secret = base / "secret"
    secret.write_bytes(SECRET)
    os.chmod(secret, 0o600)
    yield base
    shutil.rmtree(base, ignore_errors=True)


# --- the host lock ----------------------------------------------------------------------------------


def dump_args(base: Path, lock_dir: Path) -> dict:
    src = base / "src"
    src.mkdir(exist_ok=True)
    (src / "data.txt").write_text("data\n")
    return dict(job=JOB, source=dict(engine="files", path=str(src)), storage=dict(path=str(base / "store")),
                compression="none", lock=dict(dir=str(lock_dir)))


def lock_file(base: Path, lock_dir: Path) -> Path:
    """The path of the job's host lock file, as the module names it."""
    return Path(HostLock(str(lock_dir), LocalStorage(str(base / "store")), "", JOB).path)


def assert_secret_intact(base: Path):
    secret = base / "secret"
    assert secret.read_bytes() == SECRET, "the root-only file was truncated or changed through the lock file"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and secret.stat().st_uid == 0


def plant_symlink(link: Path, target: Path):
    as_nobody(f"import os; os.symlink({str(target)!r}, {str(link)!r})")
    assert link.is_symlink() and link.lstat().st_uid == NOBODY.pw_uid


def test_a_lock_folder_another_user_created_is_never_adopted(run_module, shared):
    """The attacker creates the lock folder before root does and puts a symlink to the secret in it."""
    os.chmod(shared, 0o777)  # as /run/lock (less the sticky bit): any user can create the folder first
    locks = shared / "locks"
    as_nobody(f"import os; os.mkdir({str(locks)!r}, 0o755)")
    plant_symlink(lock_file(shared, locks), shared / "secret")
    os.chmod(shared, 0o755)
    res = run_module("dump", dump_args(shared, locks))
    assert_secret_intact(shared)
    assert res.failed, res.describe()
    assert "lock.dir %s belongs to uid %d" % (locks, NOBODY.pw_uid) in res.msg, res.describe()
    assert not (shared / "store").exists() or not list((shared / "store").rglob("*.manifest.json"))


def test_a_lock_folder_others_may_write_is_refused(run_module, shared):
    """A root-owned folder that other users may write to (mode 0777): they can plant the symlink."""
    locks = shared / "locks"
    locks.mkdir()
    os.chmod(locks, 0o777)
    plant_symlink(lock_file(shared, locks), shared / "secret")
    res = run_module("dump", dump_args(shared, locks))
    assert_secret_intact(shared)
    assert res.failed and "can be written by group or others (mode 0777)" in res.msg, res.describe()


def test_a_lock_file_swapped_for_a_symlink_is_never_followed(run_module, shared):
    """The folder is root's own 0700, but a symlink sits where the lock file goes (left while the folder
    was shared, or by root's mistake): O_NOFOLLOW refuses it, nothing is truncated."""
    locks = shared / "locks"
    locks.mkdir(mode=0o700)
    lock_file(shared, locks).symlink_to(shared / "secret")
    res = run_module("dump", dump_args(shared, locks))
    assert_secret_intact(shared)
    assert res.failed and "is a symbolic link: refused, never followed" in res.msg, res.describe()
    assert str(lock_file(shared, locks)) in res.msg


def test_a_lock_file_of_another_user_is_refused_and_a_clean_folder_works(run_module, shared):
    locks = shared / "locks"
    locks.mkdir(mode=0o700)
    lock = lock_file(shared, locks)
    lock.write_text("")
    os.chown(lock, NOBODY.pw_uid, NOBODY.pw_gid)
    res = run_module("dump", dump_args(shared, locks))
    assert res.failed and "is not a regular file of this user" in res.msg and "uid %d" % NOBODY.pw_uid in res.msg, \
        res.describe()
    lock.unlink()
    res = run_module("dump", dump_args(shared, locks))
    assert not res.failed, res.describe()
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600 and lock.stat().st_uid == 0


def test_a_missing_lock_folder_is_created_private_whatever_the_umask(run_module, shared):
    locks = shared / "run" / "songmetrix-backup"
    old = os.umask(0)
    try:
        res = run_module("dump", dump_args(shared, locks))
    finally:
        os.umask(old)
    assert not res.failed, res.describe()
    for folder in (locks.parent, locks):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    # nobody can neither create nor hold the lock there
    proc = as_nobody(f"""
        import os
        try:
            os.open({str(lock_file(shared, locks))!r}, os.O_RDWR | os.O_CREAT)
        except PermissionError:
            print("refused")
        """)
    assert proc.stdout.strip() == "refused"


# --- the files source -------------------------------------------------------------------------------


def tar_of(root: Path, **params) -> tuple[dict, FilesSource]:
    """Run the files source in this process; the archive's members with their content, and the source."""
    source = FilesSource(dict(path=str(root), **params), None)
    buf = io.BytesIO()
    source._write_tar(buf)
    buf.seek(0)
    members = {}
    with tarfile.open(fileobj=buf) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isreg() else None
            members[member.name] = (member, handle.read() if handle else None)
    return members, source


class SwapAt:
    """Runs ``swap`` once, at the first moment the backup opens, lists or reads the link of an entry
    named ``name``: exactly between the walk's lstat and what the backup does with the entry. Hooks
    the calls a walk may use for that (open, os.open, os.scandir, os.readlink)."""

    def __init__(self, monkeypatch, name, swap):
        self.name, self.swap, self.done = name, swap, False
        for owner, attr in ((os, "open"), (os, "scandir"), (os, "readlink"), (builtins, "open")):
            real = getattr(owner, attr)
            monkeypatch.setattr(owner, attr, self._hook(real))
        monkeypatch.setattr(source_files, "open", self._hook(builtins.open), raising=False)

    def _hook(self, real):
        def hooked(target, *args, **kwargs):
            if not self.done and isinstance(target, (str, bytes, os.PathLike)) and \
                    os.path.basename(os.fsdecode(target)) == self.name:
                self.done = True
                self.swap()
            return real(target, *args, **kwargs)
        return hooked


def user_tree(base: Path) -> Path:
    """A folder of the user nobody, with a few files of theirs."""
    home = base / "home"
    home.mkdir()
    for name, text in (("a.txt", "a\n"), ("victim.txt", "harmless content of the user\n"), ("z.txt", "z\n")):
        (home / name).write_text(text)
    for path in [home, *home.iterdir()]:
        os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    return home


def test_a_file_swapped_for_a_symlink_to_a_secret_is_skipped_not_stored(monkeypatch, shared):
    home = user_tree(shared)
    victim = home / "victim.txt"

    def swap():  # what the user does between the walk's lstat and the backup's open
        os.rename(victim, home / "victim.old")
        victim.symlink_to(shared / "secret")

    hook = SwapAt(monkeypatch, "victim.txt", swap)
    members, source = tar_of(home)
    assert hook.done
    stored = b"".join(content or b"" for _member, content in members.values())
    assert b"root-only" not in stored, "the secret was stored through the swapped-in symlink"
    assert "victim.txt" not in members and {"a.txt", "z.txt"} <= set(members)
    assert any(str(victim) in w and "replaced" in w and "skipped" in w for w in source.warnings), source.warnings


def test_a_symlink_swapped_back_to_a_file_before_readlink_does_not_fail_the_run(monkeypatch, shared):
    home = user_tree(shared)
    flip = home / "flip"
    flip.symlink_to("a.txt")

    def swap():
        flip.unlink()
        flip.write_text("now a file\n")

    hook = SwapAt(monkeypatch, "flip", swap)
    members, source = tar_of(home)  # the old code: BackupError "cannot read .../flip: Invalid argument"
    assert hook.done
    assert "flip" not in members and {"a.txt", "victim.txt", "z.txt"} <= set(members)
    assert any(str(flip) in w and "skipped" in w for w in source.warnings), source.warnings


def test_a_directory_swapped_for_a_symlink_to_a_root_folder_is_not_entered(monkeypatch, shared):
    home = user_tree(shared)
    (home / "sub").mkdir()
    (home / "sub" / "mine.txt").write_text("mine\n")
    vault = shared / "vault"
    vault.mkdir(mode=0o700)
    shutil.copy(shared / "secret", vault / "mine.txt")

    def swap():
        os.rename(home / "sub", home / "sub.old")
        (home / "sub").symlink_to(vault)

    hook = SwapAt(monkeypatch, "sub", swap)
    members, source = tar_of(home)
    assert hook.done
    stored = b"".join(content or b"" for _member, content in members.values())
    assert b"root-only" not in stored and "sub/mine.txt" not in members
    assert any(str(home / "sub") in w and "skipped" in w for w in source.warnings), source.warnings


SWAPPER = """
import os, sys, time
home, secret, names, until = sys.argv[1], sys.argv[2], sys.argv[3:-1], float(sys.argv[-1])
while time.time() < until:
    for name in names:
        path = os.path.join(home, name)
        link, plain = path + ".link", path + ".plain"
        try:
            os.symlink(secret, link)
            os.rename(link, path)            # now a symlink to the secret
            with open(plain, "w") as handle:
                handle.write("harmless\\n")
            os.rename(plain, path)           # and a plain file again
        except OSError:
            pass
"""


def test_a_user_swapping_files_in_a_loop_never_gets_the_secret_stored(shared):
    """The race of the issue with a real second user: `nobody` swaps files of its folder for symlinks to a
    root-only secret as fast as it can while root backs the folder up, a bounded number of times."""
    home = user_tree(shared)
    names = ["victim%02d.txt" % i for i in range(16)]
    for name in names:
        (home / name).write_text("harmless\n")
        os.chown(home / name, NOBODY.pw_uid, NOBODY.pw_gid)
    runs, stored_secret, failures, skipped = 600, 0, [], 0
    swapper = subprocess.Popen([OTHER_PYTHON, "-c", SWAPPER, str(home), str(shared / "secret"), *names,
                                str(time.time() + 120)], user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[])
    try:
        for _ in range(runs):
            try:
                members, source = tar_of(home, exclude=["*.link", "*.plain"])
            except Exception as exc:  # counted and shown: no run may fail
                failures.append(repr(exc))
                continue
            if any(b"root-only" in (content or b"") for _member, content in members.values()):
                stored_secret += 1
            skipped += sum("replaced" in w for w in source.warnings)
    finally:
        swapper.kill()
        swapper.wait()
    print("runs %d, secret stored %d, failed %d, entries skipped as swapped %d" % (
        runs, stored_secret, len(failures), skipped))
    assert stored_secret == 0, "%d of %d runs stored the root-only secret" % (stored_secret, runs)
    assert failures == [], failures[:5]
    assert skipped > 0, "the swapper never hit the window: the test proves nothing"
