"""playbooks/restore.yml on the demo inventory: checked first, asks before writing, restores."""

import sqlite3
import subprocess

import pytest

from test_demo import run_playbook

pytestmark = pytest.mark.slow


def sqlite_dump(path):
    return subprocess.run(["sqlite3", str(path), ".dump"], check=True, capture_output=True, text=True).stdout


def target_args(path):
    return ["-e", '{"restore_target": {"engine": "sqlite", "path": "%s"}}' % path]


def test_restore_asks_then_restores_the_newest_backup(tmp_path):
    var_dir = tmp_path / "var"
    run_playbook(var_dir, "-e", "job=demo-sqlite", check=0)
    source = var_dir / "demo" / "demo.sqlite3"
    target = tmp_path / "restored" / "demo.sqlite3"
    target.parent.mkdir()

    # Without a terminal nobody can answer: nothing is restored.
    proc = run_playbook(var_dir, "-e", "job=demo-sqlite", *target_args(target), playbook="playbooks/restore.yml")
    assert proc.returncode != 0 and "Not confirmed; nothing was restored" in proc.stdout, proc.stdout
    assert "About to restore demo-sqlite/" in proc.stdout
    assert not target.exists()

    proc = run_playbook(var_dir, "-e", "job=demo-sqlite", "-e", "confirm=yes", *target_args(target),
                        playbook="playbooks/restore.yml", check=0)
    assert "Restored demo-sqlite/" in proc.stdout
    assert sqlite_dump(target) == sqlite_dump(source)

    # The job's own source is an existing database: refused without force, and left as it was.
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE added_later (x)")
    conn.commit()
    conn.close()
    before = sqlite_dump(source)
    proc = run_playbook(var_dir, "-e", "job=demo-sqlite", "-e", "confirm=yes", playbook="playbooks/restore.yml")
    assert proc.returncode != 0 and "force" in proc.stdout, proc.stdout
    assert sqlite_dump(source) == before

    proc = run_playbook(var_dir, "-e", "job=nope", "-e", "confirm=yes", playbook="playbooks/restore.yml")
    assert proc.returncode != 0 and "jobs on localhost: demo-sqlite, demo-files" in proc.stdout


def test_restore_passes_max_restore_size_and_preserve_owner(tmp_path):
    var_dir = tmp_path / "var"
    run_playbook(var_dir, "-e", "job=demo-files", check=0)
    target = tmp_path / "restored-files"
    target_arg = ["-e", '{"restore_target": {"engine": "files", "path": "%s"}}' % target]

    proc = run_playbook(var_dir, "-e", "job=demo-files", "-e", "confirm=yes", "-e", "max_restore_size=1K",
                        *target_arg, playbook="playbooks/restore.yml")
    assert proc.returncode != 0 and "more than max_restore_size (1024 bytes)" in proc.stdout, proc.stdout
    assert not target.exists()

    run_playbook(var_dir, "-e", "job=demo-files", "-e", "confirm=yes", "-e", "max_restore_size=1G",
                 "-e", "preserve_owner=false", *target_arg, playbook="playbooks/restore.yml", check=0)
    assert target.is_dir() and any(target.iterdir())
