"""Filters status_report and status_report_html: schedules, staleness, success rate, fingerprint, HTML."""

import datetime
import json
import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.songmetrix.backup.plugins.filter.status_report import (
    FilterModule,
    status_report,
    status_report_html,
)
from ansible_collections.songmetrix.backup.plugins.plugin_utils import report_schedule
from ansible_collections.songmetrix.backup.plugins.plugin_utils import status_report as sr

NOW = "2026-11-23T12:00:00Z"
SECRET = "Zq8-report-secret-value-0042"
H = 3600


def _time(text):
    return sr.parse_time(text)


def _stamp(hours_before_now):
    return sr.iso(_time(NOW) - datetime.timedelta(hours=hours_before_now))


def _listing(job, hours_ago, sizes=None, attempt=None, kind="scheduled"):
    backups = []
    for index, hours in enumerate(sorted(hours_ago)):
        started = _stamp(hours)
        backups.append({
            "manifest_key": "%s/%s.manifest.json" % (job, started), "job": job, "kind": kind,
            "started": started, "objects": ["x"], "stored_size": (sizes or [1000] * len(hours_ago))[index],
        })
    result = {"backups": backups, "count": len(backups), "incomplete": []}
    result["last_attempt"] = attempt
    return result


def _latest(listing, **manifest):
    if not listing["backups"]:
        return {"latest": None}
    newest = dict(listing["backups"][0])
    newest["manifest"] = dict({"finished": newest["started"], "raw_size": 5000, "engine": "sqlite"}, **manifest)
    return {"latest": newest}


def _job(name="db", **extra):
    job = {"name": name, "source": {"engine": "postgresql", "database": "orders", "password": SECRET},
           "storage": {"type": "s3", "bucket": "backups", "prefix": "prod", "secret_key": SECRET}}
    job.update(extra)
    return job


def _report(jobs_and_listings, **options):
    jobs = [j for j, _l in jobs_and_listings]
    listings = [lst for _j, lst in jobs_and_listings]
    data = [{"host": "db1", "jobs": jobs, "listings": listings, "latest": [_latest(lst) for lst in listings]}]
    return status_report(data, now=options.pop("now", NOW), **options)


# ---------------------------------------------------------------- schedules

@pytest.mark.parametrize("schedule, scheduler, expected", [
    ("*-*-* 02:30", "systemd", (24 * H, 24 * H)),
    ("daily", "systemd", (24 * H, 24 * H)),
    ("hourly", "systemd", (H, H)),
    ("Mon..Fri *-*-* 02:00", "systemd", (24 * H, 72 * H)),
    ("Sat *-*-* 04:00 Europe/Berlin", "systemd", (168 * H, 168 * H)),
    ("*-*-* *:00/15", "systemd", (900, 900)),
    ("30 2 * * *", "cron", (24 * H, 24 * H)),
    ("*/15 * * * *", "cron", (900, 900)),
    ("0 2 * * mon-fri", "cron", (24 * H, 72 * H)),
    ("0 */6 * * *", "cron", (6 * H, 6 * H)),
    ("@weekly", "cron", (168 * H, 168 * H)),
])
def test_schedule_intervals(schedule, scheduler, expected):
    assert report_schedule.intervals(schedule, scheduler) == expected


def test_monthly_longest_gap_is_31_days():
    _typical, longest = report_schedule.intervals("0 3 1 * *", "cron")
    assert longest == 31 * 24 * H


@pytest.mark.parametrize("schedule, scheduler", [
    (None, "systemd"), ("", "systemd"), ("whenever", "systemd"), ("61 * * * *", "cron"), ("* * *", "cron"),
    ("*-*~03", "systemd"), ("@reboot", "cron"),
])
def test_unreadable_schedules(schedule, scheduler):
    assert report_schedule.intervals(schedule, scheduler) is None


@pytest.mark.parametrize("text, seconds", [("26h", 26 * H), ("2d", 48 * H), ("1w", 168 * H), ("90", 90),
                                           (3600, 3600), ("1d12h", 36 * H)])
def test_durations(text, seconds):
    assert sr.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "h", True])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        sr.parse_duration(text)


def test_dense_horizon():
    day = 24 * H
    assert sr.dense_horizon(None, day) == float("inf")
    assert sr.dense_horizon({"keep_last": 10, "keep_daily": 7, "keep_weekly": 4}, day) == 10 * day
    assert sr.dense_horizon({"keep_daily": 14}, day) == 14 * day
    assert sr.dense_horizon({"keep_daily": 14}, H) == 0  # an hourly job keeps one run per day only
    assert sr.dense_horizon({"keep_within": "3d", "keep_hourly": 24}, H) == 72 * H
    assert sr.dense_horizon({"keep_within_daily": "10d"}, day) == 10 * day
    assert sr.dense_horizon({"keep_within_daily": "10d"}, H) == 0  # one run a day of an hourly job
    assert sr.dense_horizon({"keep_within_weekly": "8w", "keep_last": 3}, 7 * day) == 56 * day


# ---------------------------------------------------------------- success rate and staleness

def test_daily_job_all_runs_present():
    hours = [2 + 24 * d for d in range(40)]
    report = _report([(_job(schedule="*-*-* 10:00"), _listing("db", hours))])
    (job,) = report["jobs"]
    assert job["success_rate"] == {"expected": 30, "with_backup": 30, "rate": 1.0, "window_days": 30.0,
                                   "limited_by_retention": False}
    assert job["staleness"] == "green" and job["status"] == "ok"


def test_missing_runs_and_runs_after_the_newest_count_as_misses():
    # Daily runs 50 h, 74 h, ..., but the last two days nothing, and day 5 is missing.
    hours = [50 + 24 * d for d in range(20) if d != 5]
    report = _report([(_job(schedule="*-*-* 10:00"), _listing("db", hours))])
    rate = report["jobs"][0]["success_rate"]
    assert rate["expected"] == 21  # 20 slots back to the oldest, plus one complete slot after the newest
    assert rate["with_backup"] == 19


def test_retention_limits_the_window():
    hours = [2 + 24 * d for d in range(7)] + [2 + 24 * d for d in (13, 20, 27)]  # 7 daily, weeklies
    job = _job(schedule="daily", retention={"keep_daily": 7, "keep_weekly": 4})
    (entry,) = _report([(job, _listing("db", hours))])["jobs"]
    assert entry["success_rate"]["expected"] == 7 and entry["success_rate"]["rate"] == 1.0
    assert entry["success_rate"]["limited_by_retention"] is True


def test_manual_backups_do_not_count_as_runs():
    listing = _listing("db", [2], kind="manual")
    (entry,) = _report([(_job(schedule="daily"), listing)])["jobs"]
    assert entry["success_rate"] is None and entry["backups_kept"] == 1


@pytest.mark.parametrize("hours_ago, staleness, status", [
    (10, "green", "ok"), (35, "green", "ok"), (37, "amber", "warning"), (71, "amber", "warning"),
    (73, "red", "critical"),
])
def test_staleness_from_the_schedule(hours_ago, staleness, status):
    (entry,) = _report([(_job(schedule="30 2 * * *", scheduler="cron"), _listing("db", [hours_ago]))])["jobs"]
    assert (entry["staleness"], entry["status"]) == (staleness, status)
    assert entry["interval_source"] == "schedule"


@pytest.mark.parametrize("hours_ago, staleness", [(25, "green"), (27, "amber"), (51, "amber"), (53, "red")])
def test_staleness_without_schedule_uses_stale_after(hours_ago, staleness):
    (entry,) = _report([(_job(), _listing("db", [hours_ago]))], stale_after="26h")["jobs"]
    assert entry["staleness"] == staleness and entry["interval_source"] == "default"


def test_never_backed_up_is_red():
    (entry,) = _report([(_job(), _listing("db", []))])["jobs"]
    assert entry["last_success"] is None and entry["staleness"] == "red" and entry["status"] == "critical"
    assert entry["reasons"] == ["never backed up"]


def test_failed_last_attempt_is_critical_and_redacted():
    attempt = {"status": "failed", "started": _stamp(1), "finished": _stamp(1),
               "error": "connect postgresql://backup:%s@db1/orders failed; password=%s" % (SECRET, SECRET)}
    report = _report([(_job(), _listing("db", [2], attempt=attempt))])
    (entry,) = report["jobs"]
    assert entry["status"] == "critical" and entry["reasons"][0] == "last attempt failed"
    assert entry["staleness"] == "green"
    assert report["counts"]["last_attempt_failed"] == 1
    assert SECRET not in json.dumps(report)
    assert SECRET not in status_report_html(report)


def test_listing_error_and_missing_host():
    data = [{"host": "db1", "jobs": [_job()], "listings": [{"msg": "storage: access denied", "failed": False}],
             "latest": [{}]}, None]
    report = status_report(data, now=NOW, hosts=["db1", "db2"])
    (entry,) = report["jobs"]
    assert entry["status"] == "critical" and entry["error"] == "storage: access denied"
    assert report["hosts_without_data"] == [{"host": "db2", "error": "no data: the host was unreachable or failed"}]
    assert report["counts"]["hosts"] == 2 and report["status"] == "critical"


def test_ordering_locations_and_whitelist():
    local = {"type": "local", "path": "/srv/backups"}
    report = _report([
        (_job("a-ok", storage=local), _listing("a-ok", [1], sizes=[100])),
        (_job("b-never"), _listing("b-never", [])),
        (_job("c-stale"), _listing("c-stale", [40, 200], sizes=[7, 9])),
    ])
    assert [j["job"] for j in report["jobs"]] == ["b-never", "c-stale", "a-ok"]
    locations = {loc["location"]: loc for loc in report["locations"]}
    assert locations["s3://backups/prod"]["stored_bytes"] == 16 and locations["s3://backups/prod"]["jobs"] == 2
    assert locations["local:/srv/backups"]["backups"] == 1
    assert report["counts"]["stored_bytes"] == 116
    text = json.dumps(report)
    assert SECRET not in text and "secret_key" not in text and "password" not in text


def test_history_in_chart_window_oldest_first():
    (entry,) = _report([(_job(), _listing("db", [1, 48, 24 * 100], sizes=[10, 20, 30]))], chart_days=90)["jobs"]
    assert [h["stored_size"] for h in entry["history"]] == [20, 10]
    assert entry["backups_kept"] == 3 and entry["newest_size"] == 10


def test_fingerprint_ignores_the_clock_but_not_the_data():
    listing = _listing("db", [2, 26])
    first = _report([(_job(schedule="daily"), listing)], now="2026-11-23T12:00:00Z")
    later = _report([(_job(schedule="daily"), listing)], now="2026-11-23T12:05:00Z")
    assert first["generated_at"] != later["generated_at"]
    assert first["jobs"][0]["last_success"]["age_seconds"] != later["jobs"][0]["last_success"]["age_seconds"]
    assert first["fingerprint"] == later["fingerprint"]
    stale = _report([(_job(schedule="daily"), listing)], now="2026-11-25T12:00:00Z")
    assert stale["fingerprint"] != first["fingerprint"]  # it turned amber/red: the report changes
    more = _report([(_job(schedule="daily"), _listing("db", [1, 2, 26]))], now="2026-11-23T12:00:00Z")
    assert more["fingerprint"] != first["fingerprint"]


def test_bad_options_are_filter_errors():
    with pytest.raises(AnsibleFilterError, match="stale_after"):
        status_report([], now=NOW, stale_after="soon")
    with pytest.raises(AnsibleFilterError):
        status_report([], now="yesterday")
    with pytest.raises(AnsibleFilterError):
        status_report_html({"no": "report"})


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"status_report", "status_report_html"}


# ---------------------------------------------------------------- HTML

def test_html_is_self_contained_and_escaped():
    evil = _job("x<script>alert(1)</script>", source={"engine": "files", "path": "/srv/<b>&\"'"})
    report = _report([(evil, _listing("x", [3, 27], sizes=[1500, 2048])), (_job("db"), _listing("db", []))])
    page = status_report_html(report)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script>alert(1)</script>" not in page and "x&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<svg") == 2 and page.count("<rect ") == 2
    assert "no backups in 90 days" in page
    assert not re.search(r"https?://|<link|<img|@import|url\(", page)
    assert len(re.findall(r'<tr class="job status-', page)) == 2
    assert 'data-job="db"' in page and "never" in page
    assert "2.0 KiB" in page and "1.5 KiB" in page
    assert report["fingerprint"] in page
