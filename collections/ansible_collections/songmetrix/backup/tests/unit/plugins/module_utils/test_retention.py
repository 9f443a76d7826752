"""The retention planner on small histories whose expected outcome is derived by hand."""

import datetime
import json
import os

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import retention
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

UTC = datetime.timezone.utc


class B(object):
    def __init__(self, stamp):
        self.started = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)
        self.name = stamp

    def __repr__(self):
        return self.name


def history(*stamps):
    return [B(stamp) for stamp in stamps]


def kept(result):
    return {backup.name: reasons for backup, reasons in result.keep}


def deleted(result):
    return [backup.name for backup in result.delete]


def test_daily_keeps_newest_of_each_day_and_empty_days_do_not_count():
    backups = history("2026-01-01T02:00", "2026-01-01T14:00", "2026-01-05T02:00", "2026-01-09T02:00",
                      "2026-01-09T14:00", "2026-01-09T20:00")
    result = retention.plan(backups, {"keep_daily": 2})
    assert kept(result) == {"2026-01-09T20:00": ["daily"], "2026-01-05T02:00": ["daily"]}
    # newest first, whatever order the input had
    assert deleted(result) == ["2026-01-09T14:00", "2026-01-09T02:00", "2026-01-01T14:00", "2026-01-01T02:00"]


def test_a_rule_that_runs_short_keeps_the_oldest_backup_too():
    backups = history("2026-01-01T02:00", "2026-01-01T14:00", "2026-01-02T02:00")
    result = retention.plan(backups, {"keep_daily": 5})
    assert kept(result) == {"2026-01-02T02:00": ["daily"], "2026-01-01T14:00": ["daily"],
                            "2026-01-01T02:00": ["daily (oldest)"]}
    # A rule that is filled keeps no extra oldest backup.
    assert "2026-01-01T02:00" not in kept(retention.plan(backups, {"keep_daily": 2}))
    # keep_last is not a period rule: no oldest either.
    assert kept(retention.plan(backups, {"keep_last": 5})) == {b.name: ["last"] for b in backups}


def test_iso_weeks_run_monday_to_sunday_across_week_53():
    # 2020-12-31 (Thu) and 2021-01-03 (Sun) are both in ISO week 2020-W53; 2021-01-04 (Mon) is 2021-W01.
    backups = history("2020-12-28T01:00", "2020-12-31T01:00", "2021-01-03T23:00", "2021-01-04T00:30",
                      "2020-12-27T23:00")
    result = retention.plan(backups, {"keep_weekly": 3})
    assert kept(result) == {"2021-01-04T00:30": ["weekly"], "2021-01-03T23:00": ["weekly"],
                            "2020-12-27T23:00": ["weekly"]}


def test_monthly_and_yearly_with_leap_day():
    backups = history("2024-02-29T03:00", "2024-02-01T03:00", "2024-03-01T03:00", "2025-01-15T03:00",
                      "2023-12-31T23:00")
    result = retention.plan(backups, {"keep_monthly": 3, "keep_yearly": 2})
    assert kept(result) == {
        "2025-01-15T03:00": ["monthly", "yearly"],
        "2024-03-01T03:00": ["monthly", "yearly"],
        "2024-02-29T03:00": ["monthly"],
    }
    assert deleted(result) == ["2024-02-01T03:00", "2023-12-31T23:00"]


def test_periods_are_the_job_timezone_days_across_dst():
    # Europe/Berlin switches to summer time on 2026-03-29. In Berlin, 23:30Z on the 28th is already
    # 00:30 on the 29th, and 21:30Z on the 29th is 23:30 CEST on the 29th: two backups of one day.
    backups = history("2026-03-28T22:30", "2026-03-28T23:30", "2026-03-29T21:30")
    in_berlin = retention.plan(backups, {"keep_daily": 2}, "Europe/Berlin")
    assert sorted(kept(in_berlin)) == ["2026-03-28T22:30", "2026-03-29T21:30"]
    in_utc = retention.plan(backups, {"keep_daily": 2}, "UTC")
    assert sorted(kept(in_utc)) == ["2026-03-28T23:30", "2026-03-29T21:30"]


def test_hourly_across_the_repeated_hour_of_autumn_dst():
    # 2026-10-25 in Berlin: 02:00-03:00 local happens twice (00:xxZ as CEST, 01:xxZ as CET). Both are
    # local hour 2 of that day, so they are one hourly period.
    backups = history("2026-10-25T00:10", "2026-10-25T00:50", "2026-10-25T01:10", "2026-10-25T01:50")
    result = retention.plan(backups, {"keep_hourly": 10}, "Europe/Berlin")
    assert kept(result) == {"2026-10-25T01:50": ["hourly"], "2026-10-25T00:10": ["hourly (oldest)"]}


def test_keep_within_counts_back_from_the_newest_backup_not_from_now():
    backups = history("2020-03-31T12:00", "2020-03-01T12:00", "2020-02-29T12:00", "2020-02-28T12:00")
    # 1m before 2020-03-31 12:00 is 2020-02-29 12:00 (clamped); only backups after it are kept.
    result = retention.plan(backups, {"keep_within": "1m"})
    assert sorted(kept(result)) == ["2020-03-01T12:00", "2020-03-31T12:00"]
    result = retention.plan(backups, {"keep_within": "1m1d"})
    assert sorted(kept(result)) == ["2020-02-29T12:00", "2020-03-01T12:00", "2020-03-31T12:00"]
    # The cutoff itself is outside: 30d back is exactly 2020-03-01 12:00, 31d back is 2020-02-29 12:00.
    now = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    result = retention.plan(backups, {"keep_within": "30d", "keep_last": 1}, now=now)
    assert kept(result) == {"2020-03-31T12:00": ["last", "within"]}
    result = retention.plan(backups, {"keep_within": "31d", "keep_last": 1}, now=now)
    assert kept(result) == {"2020-03-31T12:00": ["last", "within"], "2020-03-01T12:00": ["within"]}


@pytest.mark.parametrize("text,expected", [
    ("10d", (0, 0, 10, 0)), ("2w", (0, 0, 14, 0)), ("6m", (0, 6, 0, 0)), ("1y", (1, 0, 0, 0)),
    ("36h", (0, 0, 0, 36)), ("1y2m3w4d5h", (1, 2, 25, 5)),
])
def test_durations(text, expected):
    assert retention.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "d", "1.5d", "10 days", "-1d", "1d1y"])
def test_bad_durations(text):
    with pytest.raises(ValidationError, match="not a duration"):
        retention.parse_duration(text)


def test_future_backups_are_kept_and_do_not_count():
    now = datetime.datetime(2026, 1, 10, tzinfo=UTC)
    backups = history("2026-01-08T02:00", "2026-01-09T02:00", "2027-01-01T02:00")
    result = retention.plan(backups, {"keep_last": 1}, now=now)
    assert kept(result) == {"2027-01-01T02:00": ["future"], "2026-01-09T02:00": ["last"]}
    assert deleted(result) == ["2026-01-08T02:00"]


def test_unlimited_rules():
    backups = history("2026-01-01T02:00", "2026-01-02T02:00", "2026-01-02T03:00")
    assert deleted(retention.plan(backups, {"keep_last": -1})) == []
    result = retention.plan(backups, {"keep_daily": -1})
    assert kept(result) == {"2026-01-02T03:00": ["daily"], "2026-01-01T02:00": ["daily"]}


@pytest.mark.parametrize("policy,message", [
    ({}, "sets no rule"),
    ({"keep_daily": 0, "keep_within": None}, "sets no rule"),
    ({"keep_dialy": 7}, "unknown retention option"),
    ({"keep_daily": -2}, "keep_daily must be a whole number"),
    ({"keep_daily": True}, "keep_daily must be a whole number"),
    ({"keep_daily": "7"}, "keep_daily must be a whole number"),
    ({"keep_within": "soon"}, "not a duration"),
])
def test_bad_policies_are_errors_not_delete_everything(policy, message):
    with pytest.raises(ValidationError, match=message):
        retention.plan(history("2026-01-01T02:00"), policy)


def test_empty_history():
    result = retention.plan([], {"keep_daily": 7})
    assert result.keep == [] and result.delete == []


# --------------------------------------------------------------------------- against restic


def restic_cases():
    path = os.path.join(os.path.dirname(__file__), "fixtures", "restic_forget.json")
    with open(path) as handle:
        fixture = json.load(handle)
    stamps = [datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) for s in fixture["snapshots"]]
    return fixture, stamps


@pytest.mark.parametrize("case_index", range(7))
def test_same_decisions_as_restic_forget(case_index):
    """scripts/make-restic-retention-fixtures.py recorded what `restic forget` keeps for each policy.

    Debian 12's restic (0.14) predates the "keep the oldest when a rule runs short" change of 0.17,
    so backups this planner keeps *only* for that reason are set aside before comparing, and checked
    separately: there is at most one, the oldest backup.
    """
    fixture, stamps = restic_cases()
    case = fixture["cases"][case_index]
    backups = [Stamp(moment) for moment in stamps]
    result = retention.plan(backups, case["policy"], fixture["timezone"])
    only_oldest = [b for b, reasons in result.keep if all(r.endswith("(oldest)") for r in reasons)]
    assert only_oldest in ([], [min(backups, key=lambda b: b.started)])
    ours = sorted(b.iso for b, _reasons in result.keep if b not in only_oldest)
    assert ours == case["restic_keep"]
    assert len(result.keep) + len(result.delete) == len(backups)


class Stamp(object):
    def __init__(self, moment):
        self.started = moment
        self.iso = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
