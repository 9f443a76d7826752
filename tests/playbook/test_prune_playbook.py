"""Retention through the role: backup.yml prunes a job only after its backup succeeded, and
playbooks/prune.yml prunes (or, with --check, plans) without a backup. Demo inventory, local storage."""

import datetime
import json
from pathlib import Path

import pytest
import yaml

from ansible_collections.songmetrix.backup.plugins.module_utils import layout, retention
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_local import LocalStorage
from test_demo import manifests, run_playbook
from tests.history import make_history

pytestmark = pytest.mark.slow
JOB = "demo-sqlite"
DEMO_VARS = Path(__file__).resolve().parents[2] / "inventories" / "demo" / "group_vars" / "all.yml"
DEMO_RETENTION = yaml.safe_load(DEMO_VARS.read_text())["songmetrix_backup_demo_retention"]


@pytest.fixture
def var_dir(tmp_path):
    return tmp_path / "var"


def old_history(var_dir, days=30):
    """One backup a day at 02:00 UTC for ``days`` days up to yesterday; newest first."""
    today = datetime.datetime.now(datetime.timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
    stamps = [today - datetime.timedelta(days=n) for n in range(1, days + 1)]
    return make_history(LocalStorage(str(Path(var_dir) / "backups")), "", JOB, stamps)


def started(manifest_path):
    """The start time a stored manifest's key (<job>/<YYYY>/<MM>/<DD>/<name>) names."""
    return layout.parse_manifest_key("/".join(manifest_path.parts[-5:]))["started"]


def present(var_dir, backups):
    return [b for b in backups if (Path(var_dir) / "backups" / b.manifest_key).exists()]


def test_backup_prunes_after_success_and_stops_at_the_delete_fraction(var_dir):
    history = old_history(var_dir)
    # 31 backups and keep_last 10 / daily 7 / weekly 4: more than half would go, so prune stops.
    proc = run_playbook(var_dir, "-e", "job=" + JOB)
    assert proc.returncode != 0, proc.stdout
    assert f"{JOB}: FAILED" in proc.stdout and "force: true" in proc.stdout, proc.stdout
    assert "(written before the step that failed)" in proc.stdout
    assert len(manifests(var_dir, JOB)) == 31 and present(var_dir, history) == history

    dry = run_playbook(var_dir, "--check", "-e", "prune_force=true", playbook="playbooks/prune.yml", check=0)
    assert f"{JOB}: prune ok, check mode: nothing deleted" in dry.stdout, dry.stdout
    would = int(dry.stdout.split("would delete ")[1].split(" ")[0])
    assert 15 < would < 31 - 10
    assert len(manifests(var_dir, JOB)) == 31

    run_playbook(var_dir, "-e", "prune_force=true", playbook="playbooks/prune.yml", check=0)
    left = manifests(var_dir, JOB)
    assert len(left) == 31 - would
    kept = present(var_dir, history)
    assert kept[:9] == history[:9]  # keep_last 10: the new backup and the 9 newest old ones
    assert history[-1] not in kept  # 30 days back is older than any of the 4 weekly periods

    # Steady state: one more backup, and prune deletes what the policy says (usually one old backup; on
    # a Tuesday none, as the weekly rule's oldest backup stays), with no force needed.
    proc = run_playbook(var_dir, "-e", "job=" + JOB, check=0)
    assert "prune     deleted" in proc.stdout, proc.stdout
    after = manifests(var_dir, JOB)
    (new,) = set(after) - set(left)
    expected = retention.plan([started(path) for path in left + [new]], DEMO_RETENTION, "UTC", started=lambda s: s,
                              now=datetime.datetime.now(datetime.timezone.utc))
    assert sorted(started(path) for path in after) == sorted(moment for moment, _why in expected.keep)
    assert len(after) <= len(left) + 1


def test_a_failed_backup_is_not_followed_by_a_prune(var_dir):
    history = old_history(var_dir, days=12)
    missing = Path(var_dir) / "nowhere" / "missing.sqlite3"
    proc = run_playbook(var_dir, "-e", "job=" + JOB, "-e", f"songmetrix_demo_sqlite_path={missing}")
    assert proc.returncode != 0 and f"{JOB}: FAILED" in proc.stdout, proc.stdout
    assert present(var_dir, history) == history
    record = json.loads((Path(var_dir) / "backups" / JOB / "last-attempt.json").read_text())
    assert record["status"] == "failed" and str(missing) in record["error"]

    # The standalone prune sees the failed attempt too, and deletes nothing.
    proc = run_playbook(var_dir, "-e", "prune_force=true", playbook="playbooks/prune.yml", check=0)
    stopped = "prune     stopped, nothing deleted: the latest backup attempt of job demo-sqlite"
    assert stopped in proc.stdout, proc.stdout
    assert present(var_dir, history) == history
