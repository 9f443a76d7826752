"""playbooks/verify.yml on the demo inventory: each job's newest backup restored into a scratch
copy and checked against the manifest's row counts; a wrong count fails the play and names the table."""

import json

import pytest

from test_demo import manifests, run_playbook

pytestmark = pytest.mark.slow


def test_restore_tests_pass_then_catch_a_count_that_does_not_match(var_dir):
    run_playbook(var_dir, check=0)
    proc = run_playbook(var_dir, playbook="playbooks/verify.yml", check=0)
    assert "demo-sqlite: restore test ok" in proc.stdout and "demo-files: restore test ok" in proc.stdout, proc.stdout
    assert "checked   3 table(s)" in proc.stdout  # artists, songs, plays

    (manifest_path,) = manifests(var_dir, "demo-sqlite")
    record = json.loads(manifest_path.read_text())
    record["table_counts"]["songs"] += 1
    manifest_path.write_text(json.dumps(record))
    proc = run_playbook(var_dir, playbook="playbooks/verify.yml")
    assert proc.returncode != 0, proc.stdout
    assert "demo-sqlite: FAILED (restore test)" in proc.stdout and "songs" in proc.stdout, proc.stdout
    assert "demo-files: restore test ok" in proc.stdout
    # The scratch copy is gone: nothing but the backups was left in the var dir.
    assert not list(var_dir.rglob("*restore_test*"))


@pytest.fixture
def var_dir(tmp_path):
    return tmp_path / "var"
