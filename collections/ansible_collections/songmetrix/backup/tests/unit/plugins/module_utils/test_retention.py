"""The retention planner on small histories whose expected outcome is derived by hand."""

import datetime
import json
import os
import re
from zoneinfo import ZoneInfo

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
    more = history("2020-03-02T13:00", "2020-03-02T12:00")
    backups = history("2020-03-31T12:00", "2020-03-01T12:00", "2020-02-29T12:00", "2020-02-28T12:00")
    # As restic (Go's AddDate): 1m before 2020-03-31 is "2020-02-31", which rolls forward to 2020-03-02
    # (not clamped to Feb 29); only backups after it are kept.
    result = retention.plan(backups + more, {"keep_within": "1m"})
    assert sorted(kept(result)) == ["2020-03-02T13:00", "2020-03-31T12:00"]
    # "2020-02-30" is 2020-03-01.
    result = retention.plan(backups + more, {"keep_within": "1m1d"})
    assert sorted(kept(result)) == ["2020-03-02T12:00", "2020-03-02T13:00", "2020-03-31T12:00"]
    # The cutoff itself is outside: 30d back is exactly 2020-03-01 12:00, 31d back is 2020-02-29 12:00.
    now = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    result = retention.plan(backups, {"keep_within": "30d", "keep_last": 1}, now=now)
    assert kept(result) == {"2020-03-31T12:00": ["last", "within"]}
    result = retention.plan(backups, {"keep_within": "31d", "keep_last": 1}, now=now)
    assert kept(result) == {"2020-03-31T12:00": ["last", "within"], "2020-03-01T12:00": ["within"]}


def test_keep_within_rolls_month_overflow_forward_like_go_adddate():
    # 2021 is no leap year: "2021-02-31" is 2021-03-03, so 1m before Mar 31 is Mar 3, not Feb 28.
    backups = history("2021-03-31T12:00", "2021-03-03T12:30", "2021-03-03T11:30", "2021-02-28T12:30")
    assert sorted(kept(retention.plan(backups, {"keep_within": "1m"}))) == ["2021-03-03T12:30", "2021-03-31T12:00"]
    # Years too: 1y before 2024-02-29 is "2023-02-29", that is 2023-03-01.
    backups = history("2024-02-29T12:00", "2023-03-01T12:30", "2023-03-01T11:30", "2023-02-28T12:30")
    assert sorted(kept(retention.plan(backups, {"keep_within": "1y"}))) == ["2023-03-01T12:30", "2024-02-29T12:00"]


def test_keep_within_hours_are_absolute_time_across_dst():
    # Berlin springs forward on 2026-03-29 at 02:00. 12 hours before 12:00 CEST (10:00Z) is 22:00Z,
    # 23:00 CET on the 28th, not midnight on the wall clock.
    backups = history("2026-03-29T10:00", "2026-03-28T22:30", "2026-03-28T21:30")
    result = retention.plan(backups, {"keep_within": "12h"}, "Europe/Berlin")
    assert sorted(kept(result)) == ["2026-03-28T22:30", "2026-03-29T10:00"]
    # Days are calendar days on the job's wall clock (Go's AddDate): 1d before 12:00 CEST on the 29th is
    # 12:00 CET on the 28th (11:00Z), 23 hours back.
    backups = history("2026-03-29T10:00", "2026-03-28T11:30", "2026-03-28T10:30")
    result = retention.plan(backups, {"keep_within": "1d"}, "Europe/Berlin")
    assert sorted(kept(result)) == ["2026-03-28T11:30", "2026-03-29T10:00"]


def test_keep_within_compares_instants_in_the_repeated_autumn_hour():
    # 2026-10-25 in Berlin: 00:40Z is 02:40 CEST, 01:50Z is 02:50 CET, 70 minutes later. One hour before
    # the newest is 00:50Z: 00:40Z is older, although its wall clock (02:40) is after 01:50.
    backups = history("2026-10-25T01:50", "2026-10-25T01:10", "2026-10-25T00:40")
    result = retention.plan(backups, {"keep_within": "1h"}, "Europe/Berlin")
    assert sorted(kept(result)) == ["2026-10-25T01:10", "2026-10-25T01:50"]


def test_keep_within_resolves_a_repeated_wall_clock_as_go_does():
    # 1m before 2026-11-25 02:30 CET is 2026-10-25 02:30, a wall clock that happens twice in Berlin. Go's
    # time.Date takes the second (02:30 CET, 01:30Z); so 00:45Z (02:45 CEST) is outside the window.
    backups = history("2026-11-25T01:30", "2026-10-25T01:35", "2026-10-25T00:45")
    result = retention.plan(backups, {"keep_within": "1m"}, "Europe/Berlin")
    assert sorted(kept(result)) == ["2026-10-25T01:35", "2026-11-25T01:30"]
    # A wall clock that does not exist (02:30 on 2026-03-29) is taken with the offset before the
    # change: 01:30Z, as Go does.
    backups = history("2026-04-29T00:30", "2026-03-29T01:35", "2026-03-29T01:25")
    result = retention.plan(backups, {"keep_within": "1m"}, "Europe/Berlin")
    assert sorted(kept(result)) == ["2026-03-29T01:35", "2026-04-29T00:30"]
    # West of UTC Go's rule gives the earlier instant: 1m before 2026-12-01 01:30 EST is 2026-11-01 01:30,
    # taken as 01:30 EDT (05:30Z); 05:45Z (01:45 EDT) is inside, 05:15Z (01:15 EDT) is not.
    backups = history("2026-12-01T06:30", "2026-11-01T06:15", "2026-11-01T05:45", "2026-11-01T05:15")
    result = retention.plan(backups, {"keep_within": "1m"}, "America/New_York")
    assert sorted(kept(result)) == ["2026-11-01T05:45", "2026-11-01T06:15", "2026-12-01T06:30"]


def test_keep_within_reaching_before_year_one_keeps_everything():
    backups = history("2026-01-01T00:00", "0002-01-01T00:00")
    result = retention.plan(backups, {"keep_within": "9999y", "keep_within_yearly": "9999y"})
    assert kept(result) == {"2026-01-01T00:00": ["within", "within_yearly"],
                            "0002-01-01T00:00": ["within", "within_yearly"]}


def test_zero_durations_are_no_rule_as_in_restic():
    with pytest.raises(ValidationError, match="sets no rule"):
        retention.plan(history("2026-01-01T02:00"), {"keep_within": "0d", "keep_within_daily": "0y0h"})
    assert retention.check_policy({"keep_within": "0d", "keep_last": 1})["within"] is None


def test_unlimited_period_rule_keeps_the_oldest_backup_too():
    # restic keeps the oldest when a rule still has counts left at the end, and -1 always has.
    backups = history("2026-01-01T02:00", "2026-01-01T14:00", "2026-01-02T02:00")
    result = retention.plan(backups, {"keep_daily": -1})
    assert kept(result) == {"2026-01-02T02:00": ["daily"], "2026-01-01T14:00": ["daily"],
                            "2026-01-01T02:00": ["daily (oldest)"]}
    result = retention.plan(backups, {"keep_monthly": -1, "keep_yearly": 5})
    assert kept(result) == {"2026-01-02T02:00": ["monthly", "yearly"],
                            "2026-01-01T02:00": ["monthly (oldest)", "yearly (oldest)"]}


def test_keep_within_period_rules_keep_the_newest_of_each_period_in_the_window():
    backups = history("2026-01-10T20:00", "2026-01-10T08:00", "2026-01-09T20:00", "2026-01-09T08:00",
                      "2026-01-08T20:00", "2026-01-08T08:00", "2026-01-01T08:00")
    # The window is 2d back from the newest backup: after 2026-01-08 20:00.
    result = retention.plan(backups, {"keep_within_daily": "2d"})
    assert kept(result) == {"2026-01-10T20:00": ["within_daily"], "2026-01-09T20:00": ["within_daily"]}
    # No count: a long window keeps one a day, and the oldest backup when it is inside the window.
    result = retention.plan(backups, {"keep_within_daily": "1m"})
    assert kept(result) == {"2026-01-10T20:00": ["within_daily"], "2026-01-09T20:00": ["within_daily"],
                            "2026-01-08T20:00": ["within_daily"], "2026-01-01T08:00": ["within_daily"]}
    result = retention.plan(backups, {"keep_within_weekly": "1m", "keep_within_hourly": "13h"})
    assert kept(result) == {"2026-01-10T20:00": ["within_hourly", "within_weekly"],
                            "2026-01-10T08:00": ["within_hourly"],
                            "2026-01-01T08:00": ["within_weekly"]}
    same_week = history("2026-01-07T08:00", "2026-01-06T08:00", "2026-01-05T08:00")
    result = retention.plan(same_week, {"keep_within_weekly": "1m", "keep_within_monthly": "1y",
                                        "keep_within_yearly": "1y"})
    assert kept(result) == {
        "2026-01-07T08:00": ["within_weekly", "within_monthly", "within_yearly"],
        "2026-01-05T08:00": ["within_weekly (oldest)", "within_monthly (oldest)", "within_yearly (oldest)"],
    }


def test_keep_within_period_rules_leave_future_backups_out():
    now = datetime.datetime(2026, 1, 10, 12, tzinfo=UTC)
    backups = history("2026-01-10T11:00", "2026-01-10T13:00", "2026-01-09T11:00", "2026-01-08T11:00")
    result = retention.plan(backups, {"keep_within_daily": "1d"}, now=now)
    # The window counts back from the newest backup that is not in the future; the backup dated 13:00
    # does not take the place of 11:00 as that day's backup.
    assert kept(result) == {"2026-01-10T13:00": ["future"], "2026-01-10T11:00": ["within_daily"]}


@pytest.mark.parametrize("text,expected", [
    ("10d", (0, 0, 10, 0)), ("2w", (0, 0, 14, 0)), ("6m", (0, 6, 0, 0)), ("1y", (1, 0, 0, 0)),
    ("36h", (0, 0, 0, 36)), ("1y2m3w4d5h", (1, 2, 25, 5)),
    # restic takes the units in any order (its own test data has 1y1d1m), and trims spaces around.
    ("1d1y", (1, 0, 1, 0)), ("1y1d1m", (1, 1, 1, 0)), ("4h3d9m", (0, 9, 3, 4)), (" 7m5d ", (0, 7, 5, 0)),
    ("0d", (0, 0, 0, 0)), ("0012h", (0, 0, 0, 12)),
])
def test_durations(text, expected):
    assert retention.parse_duration(text) == expected


@pytest.mark.parametrize("text", [
    "", "10", "d", "1.5d", "10 days", "-1d",
    # restic refuses these too: units other than y m d h (w is this collection's own), upper case,
    # a sign (restic's forget: "durations containing negative values are not allowed"), a number
    # without unit, spaces inside, non-ASCII digits.
    "1s", "1D", "1Y", "1y-5d", "+1d", "1d5", "1d 2h", "\u0661d",
    # restic silently takes the last of a repeated unit; a typo in a deletion policy is refused here.
    "1d2d", "1m1y1m",
])
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

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def load_fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return json.load(handle)


class Stamp(object):
    def __init__(self, moment, index=None):
        self.started = moment
        self.iso = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.index = index


def restic_cases():
    fixture = load_fixture("restic_forget.json")
    stamps = [datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) for s in fixture["snapshots"]]
    return fixture, stamps


def counts_left_at_the_oldest(stamps, policy, zone):
    """Whether a period rule of ``policy`` still has counts when restic reaches the oldest snapshot:
    fewer distinct periods among the others than its N (restic >= 0.16 then keeps the oldest too)."""
    keys = {"keep_hourly": lambda t: t.strftime("%Y-%m-%d %H"), "keep_daily": lambda t: t.date(),
            "keep_weekly": lambda t: t.isocalendar()[:2], "keep_monthly": lambda t: (t.year, t.month),
            "keep_yearly": lambda t: t.year}
    others = sorted(stamps)[1:]
    return any(len({key(t.astimezone(zone)) for t in others}) < policy[rule]
               for rule, key in keys.items() if policy.get(rule))


@pytest.mark.parametrize("case_index", range(7))
def test_same_decisions_as_restic_forget(case_index):
    """scripts/make-restic-retention-fixtures.py recorded what `restic forget` keeps for each policy.

    Debian 12's restic (0.14) predates "keep the oldest snapshot when a rule has counts left"
    (restic 0.16.0, restic issue 3624): where a rule of the policy runs short, today's restic keeps
    the oldest backup as well; the expectation adds it, and nothing else differs.
    """
    fixture, stamps = restic_cases()
    case = fixture["cases"][case_index]
    backups = [Stamp(moment) for moment in stamps]
    result = retention.plan(backups, case["policy"], fixture["timezone"])
    expected = set(case["restic_keep"])
    if counts_left_at_the_oldest(stamps, case["policy"], ZoneInfo(fixture["timezone"])):
        expected.add(min(backups, key=lambda b: b.started).iso)
    assert sorted(b.iso for b, _reasons in result.keep) == sorted(expected)
    assert len(result.keep) + len(result.delete) == len(backups)


def test_the_restic_forget_fixture_exercises_the_oldest_rule():
    fixture, stamps = restic_cases()
    short = [case["policy"] for case in fixture["cases"]
             if counts_left_at_the_oldest(stamps, case["policy"], ZoneInfo(fixture["timezone"]))]
    assert {"keep_daily": 400} in short and len(short) < len(fixture["cases"])


# restic's ExpirePolicy fields, as the planner's options
RESTIC_FIELDS = {
    "Last": "keep_last", "Hourly": "keep_hourly", "Daily": "keep_daily", "Weekly": "keep_weekly",
    "Monthly": "keep_monthly", "Yearly": "keep_yearly", "Within": "keep_within",
    "WithinHourly": "keep_within_hourly", "WithinDaily": "keep_within_daily", "WithinWeekly": "keep_within_weekly",
    "WithinMonthly": "keep_within_monthly", "WithinYearly": "keep_within_yearly",
}
RESTIC_TESTDATA = load_fixture("restic_policy_testdata.json")
SUPPORTED = [case for case in RESTIC_TESTDATA["cases"] if case["policy"] and set(case["policy"]) <= set(RESTIC_FIELDS)]


def restic_reason(match):
    """restic's words for a reason ("daily snapshot", "oldest yearly snapshot", "within 1m14d",
    "daily within 1y2m3d3h") as the planner's ("daily", "yearly (oldest)", "within", "within_daily")."""
    words = match[len("oldest "):] if match.startswith("oldest ") else match
    suffix = " (oldest)" if words != match else ""
    rule = re.match(r"^(last|hourly|daily|weekly|monthly|yearly) snapshot$", words)
    if rule:
        return rule.group(1) + suffix
    rule = re.match(r"^within [0-9ymdh]+$", words)
    if rule:
        return "within" + suffix
    rule = re.match(r"^(hourly|daily|weekly|monthly|yearly) within [0-9ymdh]+$", words)
    if rule:
        return "within_" + rule.group(1) + suffix
    raise AssertionError("unknown restic reason %r" % match)


def restic_snapshots():
    return [Stamp(datetime.datetime.strptime(snap["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC), index)
            for index, snap in enumerate(RESTIC_TESTDATA["snapshots"])]


@pytest.mark.parametrize("case", SUPPORTED, ids=lambda case: "policy_keep_snapshots_%d" % case["index"])
def test_same_decisions_as_restics_own_policy_tests(case):
    """restic's TestApplyPolicy (fixtures/restic_policy_testdata.json, made by
    scripts/make-restic-policy-fixture.py): the same backups kept, in the same order, for the same
    reasons. Its snapshots are all in UTC, so the job timezone is UTC; "now" is after all of them,
    as in restic's test."""
    policy = {RESTIC_FIELDS[field]: value for field, value in case["policy"].items()}
    now = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    result = retention.plan(restic_snapshots(), policy, RESTIC_TESTDATA["timezone"], now=now)
    ours = [(backup.index, sorted(reasons)) for backup, reasons in result.keep]
    theirs = [(index, sorted(restic_reason(match) for match in matches)) for index, matches in case["keep"]]
    assert ours == theirs


def test_restics_policies_the_planner_does_not_take():
    # Tags (backups have none) and the empty policy: restic's forget refuses that one as well ("no
    # policy was specified, no snapshots will be removed").
    unsupported = [case for case in RESTIC_TESTDATA["cases"] if case not in SUPPORTED]
    assert [case["index"] for case in unsupported] == [0, 18, 19, 20]
    assert [case["policy"] for case in unsupported[1:]] == [{"Tags": [["foo"]]}, {"Tags": [["foo", "bar"]]},
                                                            {"Tags": [["foo"], ["bar"]]}]
    with pytest.raises(ValidationError, match="sets no rule"):
        retention.plan(restic_snapshots(), {})
    # Every -1 and every within rule of restic's test is among the compared ones.
    compared = {field for case in SUPPORTED for field in case["policy"]}
    assert compared == set(RESTIC_FIELDS)
    assert any(-1 in case["policy"].values() for case in SUPPORTED)


def test_every_rule_is_a_prune_option_documented_with_its_type():
    import yaml

    from ansible_collections.songmetrix.backup.plugins.module_utils.specs import RETENTION_OPTIONS
    from ansible_collections.songmetrix.backup.plugins.modules import prune

    specs = {key: spec["type"] for key, spec in RETENTION_OPTIONS.items()}
    assert specs == {key: "str" if "within" in key else "int" for key in retention.POLICY_KEYS}
    documented = yaml.safe_load(prune.DOCUMENTATION)["options"]["retention"]["suboptions"]
    assert {key: option["type"] for key, option in documented.items()} == specs
    assert {"keep_within_hourly", "keep_within_daily", "keep_within_weekly", "keep_within_monthly",
            "keep_within_yearly"} <= set(specs)
