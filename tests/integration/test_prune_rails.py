"""prune's safety rails, one test each, on local storage (real files): what a policy alone would delete
and what prune refuses to."""

import datetime
import json
import os
import sqlite3
import subprocess

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import layout
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.prune import delete_backups, plan_deletion, run_prune
from ansible_collections.songmetrix.backup.plugins.module_utils.catalog import list_backups
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_local import LocalStorage
from tests.history import make_history

UTC = datetime.timezone.utc
# The real clock: dump writes backups at the time it runs, and they must fit in the same history.
NOW = datetime.datetime.now(UTC).replace(second=0, microsecond=0)


def days_back(count, hour=2):
    """One stamp a day at ``hour`` UTC for ``count`` days up to yesterday, newest first."""
    base = NOW.replace(hour=hour, minute=0, second=0)
    return [base - datetime.timedelta(days=n) for n in range(1, count + 1)]


def all_files(root):
    found = set()
    for directory, _dirs, files in os.walk(root):
        for name in files:
            found.add(os.path.relpath(os.path.join(directory, name), root))
    return found


def params(root, **extra):
    base = dict(job="app", storage=dict(type="local", path=str(root), prefix="prod"),
                retention=dict(keep_last=3), timezone="UTC", include_manual=False, min_keep=1,
                max_age=None, max_delete_fraction=0.5, force=False)
    base.update(extra)
    return base


@pytest.fixture
def root(tmp_path):
    return tmp_path / "store"


def history(root, stamps, job="app", kind="scheduled"):
    return make_history(LocalStorage(str(root)), "prod", job, stamps, kind=kind)


def test_an_empty_policy_is_an_error_and_nothing_is_touched(root):
    history(root, days_back(5))
    before = all_files(root)
    for policy in ({}, {"keep_daily": 0, "keep_within": None}, {"keep_dayly": 3}):
        with pytest.raises(ValidationError):
            run_prune(params(root, retention=policy), now=NOW)
    assert all_files(root) == before


def test_policy_deletes_the_rest_and_check_mode_is_the_same_plan_with_nothing_deleted(root):
    made = history(root, days_back(5))
    before = all_files(root)
    sizes = {key: os.path.getsize(os.path.join(root, key)) for key in before}
    dry = run_prune(params(root, force=True), check_mode=True, now=NOW)
    assert all_files(root) == before
    assert dry["changed"] is True
    real = run_prune(params(root, force=True), now=NOW)
    assert dry["deleted"] == real["deleted"]
    assert [d["manifest_key"] for d in real["deleted"]] == [b.manifest_key for b in made[3:]]
    assert [k["manifest_key"] for k in real["kept"]] == [b.manifest_key for b in made[:3]]
    assert real["kept"][0]["reasons"] == ["last", "min_keep", "newest good"]
    gone = {b.manifest_key for b in made[3:]} | {b.artifact_key for b in made[3:]}
    assert all_files(root) == before - gone
    assert real["bytes_freed"] == sum(sizes[key] for key in gone) > 0
    # The day folders the prune emptied are gone too; the root and the kept backups' folders stay.
    empty = [d for d, dirs, files in os.walk(root) if not dirs and not files]
    assert empty == [], empty
    again = run_prune(params(root), now=NOW)
    assert again["changed"] is False and again["deleted"] == []


def test_the_newest_good_backup_is_kept_when_newer_ones_are_damaged(root):
    made = history(root, days_back(6))
    # The two newest are damaged: one artifact truncated, one missing.
    with open(os.path.join(root, made[0].artifact_key), "r+b") as handle:
        handle.truncate(3)
    os.unlink(os.path.join(root, made[1].artifact_key))
    result = run_prune(params(root, retention=dict(keep_last=1), force=True), now=NOW)
    kept = {k["manifest_key"]: k["reasons"] for k in result["kept"]}
    assert kept[made[0].manifest_key] == ["last", "min_keep"]
    assert kept[made[2].manifest_key] == ["newest good"]
    assert made[1].manifest_key not in kept  # damaged and not the newest: the policy may drop it
    assert not os.path.exists(os.path.join(root, made[3].manifest_key))


def test_min_keep_keeps_more_than_the_policy(root):
    made = history(root, days_back(6))
    result = run_prune(params(root, retention=dict(keep_last=1), min_keep=4, force=True), now=NOW)
    assert [k["manifest_key"] for k in result["kept"]] == [b.manifest_key for b in made[:4]]
    assert result["kept"][3]["reasons"] == ["min_keep"]


def test_a_large_deletion_stops_without_force_and_check_mode_says_so(root):
    made = history(root, days_back(10))
    before = all_files(root)
    with pytest.raises(BackupError) as failure:
        run_prune(params(root, retention=dict(keep_last=2)), now=NOW)
    assert "would delete 8 of the 10 backups" in str(failure.value) and "force" in str(failure.value)
    assert len(failure.value.details["would_delete"]) == 8
    assert all_files(root) == before
    dry = run_prune(params(root, retention=dict(keep_last=2)), check_mode=True, now=NOW)
    assert len(dry["deleted"]) == 8 and dry["stopped"]
    assert any(w.startswith("a real run would stop: the policy would delete 8") for w in dry["warnings"])
    assert all_files(root) == before
    done = run_prune(params(root, retention=dict(keep_last=2), force=True), now=NOW)
    assert [d["manifest_key"] for d in done["deleted"]] == [b.manifest_key for b in made[2:]]
    # Exactly at the fraction is allowed: 2 of 4 with keep_last 2 after the first prune... (4 backups, 0.5)
    history(root, [NOW - datetime.timedelta(hours=1), NOW - datetime.timedelta(hours=2)])
    assert len(run_prune(params(root, retention=dict(keep_last=2)), now=NOW)["deleted"]) == 2


def test_a_failed_latest_attempt_stops_the_prune_until_a_backup_succeeds(run_module, root, tmp_path):
    history(root, days_back(6))
    before = all_files(root)
    db = str(tmp_path / "app.sqlite3")
    dump_args = dict(job="app", source=dict(engine="sqlite", path=db),
                     storage=dict(type="local", path=str(root), prefix="prod"))
    failed = run_module("dump", dump_args)  # the database does not exist yet
    assert failed.rc != 0
    record = json.loads((root / "prod/app/last-attempt.json").read_text())
    assert record["status"] == "failed" and "app.sqlite3" in record["error"]

    result = run_prune(params(root, force=True), now=NOW)
    assert result["changed"] is False and result["deleted"] == []
    assert len(result["would_delete"]) == 3
    assert "did not succeed" in result["stopped"]
    assert all_files(root) - before == {"prod/app/last-attempt.json"}

    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    ok = run_module("dump", dump_args)
    assert ok.rc == 0, ok.describe()
    record = json.loads((root / "prod/app/last-attempt.json").read_text())
    assert record["status"] == "ok" and record["manifest_key"] == ok.result["manifest_key"]
    result = run_prune(params(root, force=True))
    assert result["stopped"] is None and len(result["deleted"]) == 4
    assert result["kept"][0]["manifest_key"] == ok.result["manifest_key"]


def test_an_attempt_still_running_or_killed_also_stops_it(root):
    history(root, days_back(4))
    (root / "prod/app/last-attempt.json").write_text(json.dumps(
        {"status": "running", "started": "2026-11-23T11:00:00Z", "host": "db1", "job": "app"}))
    result = run_prune(params(root, retention=dict(keep_last=1), force=True), now=NOW)
    assert result["deleted"] == [] and "(running)" in result["stopped"] and "db1" in result["stopped"]


def test_nothing_is_deleted_when_the_newest_good_backup_is_older_than_max_age(root):
    stamps = [s - datetime.timedelta(days=9) for s in days_back(6)]
    history(root, stamps)
    before = all_files(root)
    result = run_prune(params(root, retention=dict(keep_last=1), max_age="1w", force=True), now=NOW)
    assert result["deleted"] == [] and "older than max_age 1w" in result["stopped"]
    assert any("max_age" in w for w in result["warnings"])
    assert all_files(root) == before
    result = run_prune(params(root, retention=dict(keep_last=1), max_age="11d", force=True), now=NOW)
    assert len(result["deleted"]) == 5


def test_future_backups_are_kept_warned_about_and_not_counted(root):
    made = history(root, [NOW + datetime.timedelta(days=30)] + days_back(4))
    result = run_prune(params(root, retention=dict(keep_last=2), force=True), now=NOW)
    kept = [(k["manifest_key"], k["reasons"]) for k in result["kept"]]
    assert kept[0] == (made[0].manifest_key, ["future"])
    # keep_last 2 still keeps two real backups: the future one does not take a place.
    assert [key for key, _reasons in kept[1:]] == [made[1].manifest_key, made[2].manifest_key]
    assert any("in the future" in w for w in result["warnings"])


def test_manual_backups_are_left_alone_unless_included(root):
    scheduled = history(root, days_back(4))
    manual = history(root, days_back(3, hour=9), kind="manual")
    result = run_prune(params(root, retention=dict(keep_last=1), force=True), now=NOW)
    assert result["manual_skipped"] == 3
    assert {d["manifest_key"] for d in result["deleted"]} == {b.manifest_key for b in scheduled[1:]}
    assert all(os.path.exists(os.path.join(root, b.manifest_key)) for b in manual)
    result = run_prune(params(root, retention=dict(keep_last=1), include_manual=True, force=True), now=NOW)
    assert {d["manifest_key"] for d in result["deleted"]} == {b.manifest_key for b in manual[1:]} | {
        scheduled[0].manifest_key}


def test_only_objects_of_this_jobs_manifests_are_touched(root):
    made = history(root, days_back(5))
    history(root, days_back(5), job="app2")
    history(root, days_back(5), job="app.old")
    strangers = [
        "prod/app/notes.txt",
        "prod/app/2020/01/01/app-20200101T020000Z.sql.gz",  # an artifact without a manifest
        made[4].stem.replace("/app-", "/app-other-") + ".sql.gz",
        "app/2026/11/20/app-20261120T020000Z.sql.gz",  # the same job outside the prefix
        made[4].stem + ".manifest.json.bak",
    ]
    for key in strangers:
        os.makedirs(os.path.dirname(os.path.join(root, key)), exist_ok=True)
        with open(os.path.join(root, key), "w") as handle:
            handle.write("not ours")
    before = all_files(root)
    result = run_prune(params(root, retention=dict(keep_last=1), force=True), now=NOW)
    gone = {key for b in made[1:] for key in (b.manifest_key, b.artifact_key)}
    assert all_files(root) == before - gone
    assert "prod/app/notes.txt" in result["incomplete"]
    assert "prod/app/2020/01/01/app-20200101T020000Z.sql.gz" in result["incomplete"]
    # It shares the name of a deleted backup, but its manifest did not name it: it stays.
    assert made[4].stem + ".manifest.json.bak" in all_files(root)


def test_diff_lists_manifests_before_and_after(root):
    made = history(root, days_back(3))
    result = run_prune(params(root, retention=dict(keep_last=2)), check_mode=True, diff=True, now=NOW)
    assert result["diff"]["before"].splitlines() == [b.manifest_key for b in made]
    assert result["diff"]["after"].splitlines() == [b.manifest_key for b in made[:2]]


class RecordingStorage(LocalStorage):
    """Real local storage that records delete calls and refuses some keys, like a storage would."""

    def __init__(self, path, refuse=()):
        super().__init__(path)
        self.calls = []
        self.refuse = set(refuse)

    def delete_many(self, keys):
        keys = list(keys)
        self.calls.append(keys)
        allowed = [k for k in keys if k not in self.refuse]
        failures = super().delete_many(allowed)
        return failures + [(k, "AccessDenied: refused by the test") for k in keys if k in self.refuse]


def test_manifests_go_first_and_a_manifest_that_stays_keeps_its_artifact(root):
    made = history(root, days_back(4))
    storage = RecordingStorage(str(root), refuse={made[2].manifest_key, made[3].artifact_key})
    doomed = list_backups(storage, "prod", "app").backups[1:]
    assert plan_deletion(storage, doomed) == []
    gone, errors = delete_backups(storage, doomed, layout.job_folder("prod", "app"))
    assert [b.manifest_key for b in gone] == [made[1].manifest_key, made[3].manifest_key]
    assert storage.calls[0] == [b.manifest_key for b in doomed]
    assert sorted(storage.calls[1]) == sorted([made[1].artifact_key, made[3].artifact_key])
    assert {e["key"] for e in errors} == {made[2].manifest_key, made[3].artifact_key}
    # The refused manifest still has its artifact; no manifest points at missing data.
    assert os.path.exists(os.path.join(root, made[2].artifact_key))
    for backup in list_backups(LocalStorage(str(root)), "prod", "app").backups:
        assert backup.objects, backup.manifest_key


def test_a_failed_delete_fails_the_module_and_reports_the_keys(run_module, root):
    made = history(root, days_back(4))
    artifact = os.path.join(root, made[3].artifact_key)
    # An immutable file: unlink fails with EPERM, even for root.
    subprocess.run(["chattr", "+i", artifact], check=True)
    try:
        res = run_module("prune", dict(job="app", retention=dict(keep_last=1), force=True,
                                       storage=dict(path=str(root), prefix="prod")))
    finally:
        subprocess.run(["chattr", "-i", artifact], check=True)
    assert res.rc != 0
    assert made[3].artifact_key in res.result["msg"] and "could not delete 1 object" in res.result["msg"]
    assert [e["key"] for e in res.result["errors"]] == [made[3].artifact_key]
    assert len(res.result["deleted"]) == 3
    # Its manifest went first, so no manifest points at a missing artifact; the leftover is reported.
    assert not os.path.exists(os.path.join(root, made[3].manifest_key))
    assert os.path.exists(artifact)
    assert made[3].artifact_key in run_prune(params(root, retention=dict(keep_last=1)))["incomplete"]


def test_the_module_reports_kept_and_deleted_with_reasons(run_module, root):
    made = history(root, days_back(9))
    res = run_module("prune", dict(job="app", retention=dict(keep_daily=3, keep_weekly=2), force=True,
                                   storage=dict(path=str(root), prefix="prod")), check_mode=True)
    assert res.rc == 0, res.describe()
    assert res.result["changed"] is True
    assert len(res.result["deleted"]) == 9 - len(res.result["kept"])
    assert res.result["kept"][0]["reasons"] == ["daily", "weekly", "min_keep", "newest good"]
    assert all(os.path.exists(os.path.join(root, b.manifest_key)) for b in made)
    bad = run_module("prune", dict(job="app", retention=dict(keep_daily=-2), storage=dict(path=str(root))))
    assert bad.rc != 0 and "keep_daily" in bad.result["msg"]


def test_a_backup_whose_manifest_must_be_read_and_cannot_be_is_kept_with_a_warning(root):
    made = history(root, days_back(5))
    for backup in made[1:4]:
        with open(os.path.join(root, backup.stem + ".sql.gz.sha256"), "w") as handle:
            handle.write(backup.sha256 + "\n")  # a second object with the stem: only the manifest can tell
    with open(os.path.join(root, made[2].manifest_key), "w") as handle:
        handle.write("{not json")
    record = json.loads(open(os.path.join(root, made[3].manifest_key)).read())
    record["artifact"] = made[0].artifact_key  # points into another backup
    with open(os.path.join(root, made[3].manifest_key), "w") as handle:
        json.dump(record, handle)
    with open(os.path.join(root, made[4].manifest_key), "w") as handle:
        handle.write("{not json")  # one object beside it: it goes by name, the manifest is not read
    result = run_prune(params(root, retention=dict(keep_last=1), force=True), now=NOW)
    kept = {k["manifest_key"]: k["reasons"] for k in result["kept"]}
    assert kept[made[2].manifest_key] == ["unreadable manifest"]
    assert kept[made[3].manifest_key] == ["unreadable manifest"]
    assert sum("remove it by hand" in w for w in result["warnings"]) == 2
    assert [d["manifest_key"] for d in result["deleted"]] == [made[1].manifest_key, made[4].manifest_key]
    # made[1]: only what its manifest named went; the .sha256 beside it stays (and is reported).
    assert result["deleted"][0]["objects"] == [made[1].artifact_key]
    assert os.path.exists(os.path.join(root, made[1].stem + ".sql.gz.sha256"))
    later = run_prune(params(root, retention=dict(keep_last=1)), now=NOW)
    assert made[1].stem + ".sql.gz.sha256" in later["incomplete"]
    assert result["deleted"][1]["objects"] == [made[4].artifact_key]
    assert not os.path.exists(os.path.join(root, made[4].artifact_key))
    assert os.path.exists(os.path.join(root, made[0].artifact_key))


def test_nothing_to_delete_means_no_stop_and_no_warning(root):
    result = run_prune(params(root), now=NOW)  # no storage folder at all yet
    assert result["total"] == 0 and result["stopped"] is None and result["warnings"] == []
    assert not root.exists()
    history(root, days_back(3))
    (root / "prod/app/last-attempt.json").write_text(json.dumps({"status": "failed", "error": "x"}))
    result = run_prune(params(root, retention=dict(keep_last=5)), now=NOW)
    assert result["stopped"] is None and result["warnings"] == [] and len(result["kept"]) == 3


def test_days_are_counted_in_the_jobs_timezone(root):
    day = datetime.datetime(2026, 1, 15, tzinfo=UTC)  # winter: Berlin is UTC+1
    # 12:00 and 22:30 UTC are the same day in Berlin; 23:30 UTC is already the next day there.
    made = history(root, [day.replace(hour=23, minute=30), day.replace(hour=22, minute=30), day.replace(hour=12)])
    policy = dict(keep_daily=2)
    in_utc = run_prune(params(root, retention=policy, timezone="UTC"), check_mode=True, now=NOW)
    in_berlin = run_prune(params(root, retention=policy, timezone="Europe/Berlin"), check_mode=True, now=NOW)
    # UTC: one day, so the newest and (the rule running short) the oldest stay.
    assert [d["manifest_key"] for d in in_utc["deleted"]] == [made[1].manifest_key]
    # Berlin: two days, the newest of each stays.
    assert [d["manifest_key"] for d in in_berlin["deleted"]] == [made[2].manifest_key]
