"""prune on local, S3 (moto) and SFTP (sshd) storage: two years of daily backups under a GFS policy.

The expected set is derived here, by the rule as the issue states it (the newest backup of each
of the 7 newest days, 4 newest ISO weeks and 12 newest months that have backups), not by
module_utils/retention.py. With two years of history every rule fills its count, so no "oldest"
backup is kept. What must survive untouched: another job in the same prefix, manual backups,
objects of no manifest, a foreign object, and an object of a doomed backup its manifest does not name.
"""

import datetime
import gzip
import json
import os
from collections import defaultdict

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import layout
from ansible_collections.songmetrix.backup.plugins.module_utils.prune import run_prune
from ansible_collections.songmetrix.backup.plugins.module_utils.storage import opened_storage
from tests.history import make_history

UTC = datetime.timezone.utc
PREFIX = "prod"
JOB = "app"
POLICY = {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12}
RULES = (
    ("daily", 7, lambda moment: moment.date()),
    ("weekly", 4, lambda moment: tuple(moment.isocalendar())[:2]),
    ("monthly", 12, lambda moment: (moment.year, moment.month)),
)
PROTECTIONS = {"newest good", "min_keep"}  # reasons prune adds beside the policy's


def prune_params(storage, **overrides):
    """The module's parameters as AnsibleModule hands them over (every option, defaults filled in)."""
    params = dict(job=JOB, storage=storage, retention=dict(POLICY), timezone="UTC", include_manual=False,
                  min_keep=1, max_age=None, max_delete_fraction=1.0, force=False)
    params.update(overrides)
    return params


def at(day, hour, minute=0, second=0):
    return datetime.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def two_years(today):
    """One backup a day at 02:00 UTC for the 730 days before ``today``, and some extra ones."""
    yesterday = today - datetime.timedelta(days=1)
    stamps = [at(yesterday - datetime.timedelta(days=n), 2) for n in range(730)]
    three_back = yesterday - datetime.timedelta(days=3)
    sunday = yesterday - datetime.timedelta(days=14 + yesterday.isoweekday() % 7)  # a Sunday 2-3 weeks back
    early_day = (yesterday.replace(day=1) - datetime.timedelta(days=40)).replace(day=28)  # a 28th, ~2 months back
    old = yesterday - datetime.timedelta(days=540)
    stamps += [
        at(yesterday, 14),  # the newest backup: keeps yesterday's 02:00 out of the daily rule
        at(three_back, 20, 30),
        at(three_back, 23, 59, 59),  # two more on one day: only the last counts
        at(sunday, 22),  # last backup of an ISO week
        at(early_day, 0, 0, 1),  # before that day's 02:00: never the newest of anything
        at(old, 12),  # 18 months back: past every rule
    ]
    assert len(set(stamps)) == len(stamps)
    return sorted(stamps)


def expected_reasons(stamps):
    """{stamp: {rules}} for the stamps the policy keeps, by the issue's rule."""
    kept = defaultdict(set)
    newest_first = sorted(stamps, reverse=True)
    for rule, count, period_of in RULES:
        periods = []
        for moment in newest_first:
            period = period_of(moment)
            if period in periods:
                continue
            if len(periods) == count:
                break
            periods.append(period)
            kept[moment].add(rule)
    return dict(kept)


def warning_text(result):
    """The module's warnings as one text (ansible-core 2.19+ wraps each in a WarningSummary)."""
    return json.dumps(result.get("warnings") or [])


def snapshot(params):
    """{key: size} of every object in the storage."""
    with opened_storage(params) as storage:
        return {info.key: info.size for info in storage.list_keys("")}


def put(params, key, data):
    with opened_storage(params) as storage:
        storage.put_small(key, data)


@pytest.fixture(params=["local", "s3", "sftp"])
def storage_params(request, tmp_path):
    if request.param == "local":
        return dict(type="local", path=str(tmp_path / "store"), prefix=PREFIX)
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        return request.getfixturevalue("s3_storage_params")(bucket, prefix=PREFIX)
    return dict(request.getfixturevalue("sftp_storage_params"), prefix=PREFIX)


@pytest.fixture
def history(storage_params):
    """Two years of job app, two manual backups, a month of job app2 and things that are no backup."""
    today = datetime.datetime.now(UTC).date()
    stamps = two_years(today)
    scheduled = make_history(storage_params, PREFIX, JOB, stamps)
    manual = make_history(storage_params, PREFIX, JOB, [stamps[5] + datetime.timedelta(minutes=7),
                                                        stamps[-3] + datetime.timedelta(minutes=7)], kind="manual")
    other = make_history(storage_params, PREFIX, "app2", [at(today - datetime.timedelta(days=600 + n), 2)
                                                          for n in range(31)])
    doomed = next(b for b in scheduled if b.started == stamps[1])  # the 2nd oldest: deleted by the policy
    strangers = {
        PREFIX + "/README.txt": b"not ours",
        PREFIX + "/app/notes.txt": b"not a backup",
        # an artifact whose manifest never got written (an interrupted dump)
        layout.artifact_key(layout.backup_stem(PREFIX, JOB, "scheduled", at(today - datetime.timedelta(days=400),
                                                                               3, 33)), "sql.gz"): b"orphan",
        # shares a doomed backup's stem, but its manifest does not name it
        doomed.stem + ".sql.gz.sha256": b"0" * 64,
    }
    for key, data in strangers.items():
        put(storage_params, key, data)
    return dict(params=storage_params, stamps=stamps, scheduled=scheduled, manual=manual, other=other,
                strangers=strangers)


@pytest.mark.slow
def test_two_years_pruned_to_exactly_the_gfs_set_and_check_mode_deletes_nothing(history):
    params = history["params"]
    scheduled = history["scheduled"]
    by_stamp = {b.started: b for b in scheduled}
    reasons = expected_reasons(history["stamps"])
    keep = {by_stamp[s].manifest_key: rules for s, rules in reasons.items()}
    doomed = [b for b in reversed(scheduled) if b.manifest_key not in keep]  # newest first, as prune reports
    # A hand check of the rule on the extras: the newest kept by every rule, yesterday's 02:00 by none.
    newest, second = sorted(history["stamps"], reverse=True)[:2]
    assert reasons[newest] == {"daily", "weekly", "monthly"}
    assert second not in reasons and second.date() == newest.date()
    assert 12 <= len(keep) <= 7 + 4 + 12
    assert len(doomed) > 0.95 * len(scheduled)

    before = snapshot(params)
    preview = run_prune(prune_params(params), check_mode=True)
    assert snapshot(params) == before, "check mode changed the storage"
    assert preview["changed"] is True
    assert preview["stopped"] is None, preview["stopped"]

    result = run_prune(prune_params(params))
    assert result["changed"] is True
    assert result["stopped"] is None
    assert result["errors"] == []
    assert result["total"] == len(scheduled) + len(history["manual"])
    assert result["manual_skipped"] == len(history["manual"])
    assert preview["deleted"] == result["deleted"]
    assert preview["kept"] == result["kept"]
    assert preview["bytes_freed"] == result["bytes_freed"]

    # deleted: exactly the backups the rule does not keep, newest first, each with its artifact
    assert [d["manifest_key"] for d in result["deleted"]] == [b.manifest_key for b in doomed]
    assert [d["started"] for d in result["deleted"]] == [layout.iso_utc(b.started) for b in doomed]
    assert {d["kind"] for d in result["deleted"]} == {"scheduled"}
    assert [d["objects"] for d in result["deleted"]] == [[b.artifact_key] for b in doomed]
    for entry in result["deleted"]:
        assert entry["stored_size"] == before[entry["manifest_key"]] + sum(before[k] for k in entry["objects"])
    removed = {b.manifest_key for b in doomed} | {b.artifact_key for b in doomed}
    assert result["bytes_freed"] == sum(before[key] for key in removed)

    # kept: the rule's set and the manual backups, newest first, each with its reasons
    manual = {b.manifest_key for b in history["manual"]}
    kept = result["kept"]
    assert {k["manifest_key"] for k in kept} == set(keep) | manual
    assert [k["started"] for k in kept] == sorted((k["started"] for k in kept), reverse=True)
    for entry in kept:
        if entry["manifest_key"] in manual:
            assert entry["kind"] == "manual" and entry["reasons"] == ["manual"]
        else:
            assert set(entry["reasons"]) - PROTECTIONS == keep[entry["manifest_key"]], entry
    assert "newest good" in kept[0]["reasons"] or kept[0]["manifest_key"] in manual

    # the storage: exactly the deleted backups' manifests and artifacts are gone, nothing else
    after = snapshot(params)
    assert set(after) == set(before) - removed
    assert {key: before[key] for key in after} == after
    for key in history["strangers"]:
        assert key in after
    assert {b.manifest_key for b in history["other"]} | {b.artifact_key for b in history["other"]} <= set(after)
    assert sorted(key for key in after if key.endswith(layout.MANIFEST_SUFFIX) and key.startswith("prod/app/")) \
        == sorted(set(keep) | manual)

    if params["type"] in ("local", "sftp"):  # both roots are directories on this machine
        empty = [d for d, dirs, files in os.walk(params["path"]) if not dirs and not files]
        assert empty == [], "prune left empty folders: %s" % empty[:5]

    # a second run finds nothing more to delete
    again = run_prune(prune_params(params))
    assert again["changed"] is False and again["deleted"] == [] and again["bytes_freed"] == 0
    assert snapshot(params) == after


def test_module_check_mode_reports_what_the_real_run_deletes(run_module, tmp_path):
    """The real module (a process, as Ansible runs it) on local storage: two months, keep_daily 7, force."""
    storage = dict(type="local", path=str(tmp_path / "store"), prefix=PREFIX)
    today = datetime.datetime.now(UTC).date()
    stamps = [at(today - datetime.timedelta(days=n), 2) for n in range(1, 61)]
    backups = make_history(storage, PREFIX, JOB, stamps)
    other = make_history(storage, PREFIX, "app2", stamps[:10])
    args = dict(job=JOB, storage=storage, retention={"keep_daily": 7})
    before = snapshot(storage)

    # 53 of 60 is more than max_delete_fraction 0.5: check mode shows the whole plan and warns
    unforced = run_module("prune", args, check_mode=True)
    assert unforced.rc == 0, unforced.describe()
    assert "a real run would stop" in warning_text(unforced.result), unforced.describe()
    args["force"] = True
    preview = run_module("prune", args, check_mode=True)
    assert preview.rc == 0, preview.describe()
    assert snapshot(storage) == before
    assert preview.result["changed"] is True
    assert preview.result["deleted"] == unforced.result["deleted"]
    assert "a real run would stop" not in warning_text(preview.result), preview.describe()

    res = run_module("prune", args)
    assert res.rc == 0, res.describe()
    assert res.result["changed"] is True
    assert res.result["deleted"] == preview.result["deleted"]
    assert [d["manifest_key"] for d in res.result["deleted"]] == [b.manifest_key for b in backups[7:]]
    assert [k["manifest_key"] for k in res.result["kept"]] == [b.manifest_key for b in backups[:7]]
    assert "daily" in res.result["kept"][0]["reasons"]
    after = snapshot(storage)
    gone = {b.manifest_key for b in backups[7:]} | {b.artifact_key for b in backups[7:]}
    assert set(after) == set(before) - gone
    assert {b.manifest_key for b in other} <= set(after)
    # the artifacts left are the ones stored, byte for byte
    for backup in backups[:7]:
        with open(tmp_path / "store" / backup.artifact_key, "rb") as handle:
            assert gzip.decompress(handle.read()).startswith(b"-- app scheduled backup started")
