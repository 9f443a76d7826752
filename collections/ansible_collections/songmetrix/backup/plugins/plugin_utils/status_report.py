# Copyright: songmetrix.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status report's data: backup_info results of every host and job -> one report dict.

Controller side (filter songmetrix.backup.status_report). Pure: the same input and ``now`` give
the same output. Everything shown comes from storage (listings, the newest manifest, the job's
last-attempt record) and from the job's inventory entry (schedule, retention, verify); secrets in
the inventory entry are never copied (a whitelist of fields) and texts are redacted.

``fingerprint`` is the SHA-256 of the report without the values that move with the clock alone
(``generated_at`` and the ``age_seconds`` fields): report.yml rewrites its files only when the
fingerprint changes, so a second run with nothing new reports no change. Staleness colours, success
rates and the chart's window change only at thresholds and slot or day boundaries, and are part of
the fingerprint: a job that goes stale does change the report.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math

from ansible_collections.songmetrix.backup.plugins.plugin_utils import report_schedule
from ansible_collections.songmetrix.backup.plugins.plugin_utils.redact import collect_secrets, redact_text

FORMAT_VERSION = 1
DAY = 86400
_PERIODS = {"hourly": 3600, "daily": DAY, "weekly": 7 * DAY, "monthly": 30 * DAY, "yearly": 365 * DAY}
_DURATION_UNITS = {"y": 365 * DAY, "m": 30 * DAY, "w": 7 * DAY, "d": DAY, "h": 3600, "s": 1}
_STORAGE_FIELDS = ("type", "path", "bucket", "prefix", "host", "port", "endpoint_url", "region")
_SEVERITY = {"critical": 0, "warning": 1, "ok": 2}
ERROR_LIMIT = 500


def parse_time(text):
    """An aware UTC datetime from ISO 8601 text ('2026-11-23T02:00:00Z'), or None."""
    if isinstance(text, datetime.datetime):
        moment = text
    elif isinstance(text, str) and text:
        try:
            moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def parse_duration(value, label="duration"):
    """Seconds of '26h', '2d', '90m'... (units y, m(onths), w, d, h, s; several allowed) or a number."""
    if isinstance(value, bool):
        raise ValueError("%s: %r is not a duration" % (label, value))
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().lower()
    if not text:
        raise ValueError("%s is empty" % label)
    try:
        return float(text)
    except ValueError:
        pass
    total, number = 0.0, ""
    for char in text:
        if char.isdigit() or char == ".":
            number += char
        elif char in _DURATION_UNITS and number:
            total += float(number) * _DURATION_UNITS[char]
            number = ""
        elif not char.isspace():
            raise ValueError("%s: %r is not a duration such as 26h, 2d or 1w" % (label, value))
    if number or total <= 0:
        raise ValueError("%s: %r is not a duration such as 26h, 2d or 1w" % (label, value))
    return total


def storage_location(storage):
    """'local:/srv/backups/prefix', 's3://bucket/prefix', 'sftp://host/path/prefix': no credentials."""
    storage = storage if isinstance(storage, dict) else {}
    kind = storage.get("type") or "local"
    prefix = str(storage.get("prefix") or "").strip("/")
    if kind == "s3":
        base = "s3://%s" % storage.get("bucket", "?")
        endpoint = storage.get("endpoint_url")
        if endpoint:
            base += " (%s)" % redact_text(endpoint)
    elif kind == "sftp":
        base = "sftp://%s%s" % (storage.get("host", "?"), "/" + str(storage.get("path") or "").strip("/"))
    else:
        base = "%s:%s" % (kind, str(storage.get("path") or "?").rstrip("/") or "/")
    return base.rstrip("/") + ("/" + prefix if prefix else "")


def dense_horizon(retention, interval):
    """Seconds back from the newest backup within which the retention keeps every run (inf: no pruning)."""
    if not isinstance(retention, dict) or not retention:
        return math.inf
    horizon = 0.0
    for name, value in retention.items():
        if value in (None, "", 0):
            continue
        if name == "keep_last":
            horizon = max(horizon, int(value) * interval)
        elif name == "keep_within" or (
                name.startswith("keep_within_") and name[12:] in _PERIODS and interval >= _PERIODS[name[12:]]):
            # keep_within keeps every run inside its window; keep_within_daily (say) one a day in it, which
            # is every run of a daily job or a slower one.
            try:
                horizon = max(horizon, parse_duration(value, name))
            except ValueError:
                continue
        elif name.startswith("keep_") and name[5:] in _PERIODS and interval >= _PERIODS[name[5:]]:
            horizon = max(horizon, int(value) * interval)  # each run falls in a period of its own
    return horizon


def success_rate(starts, interval, now, window, retention):
    """Runs with a backup per expected run, in slots of ``interval`` centred on the newest backup.

    ``starts``: start times (aware datetimes) of the job's scheduled backups, newest first. The slots
    go back over ``window`` seconds, but not beyond what the retention keeps of every run nor before
    the oldest backup; complete slots after the newest backup (runs that should have happened by
    ``now``) count as missed. None when there is nothing to measure.
    """
    if not starts:
        return None
    span = min(window, dense_horizon(retention, interval))
    slots = max(1, int(span // interval))
    newest, oldest = starts[0], starts[-1]
    half = datetime.timedelta(seconds=interval / 2.0)
    step = datetime.timedelta(seconds=interval)
    missed_after = max(0, int((now - (newest + half)).total_seconds() // interval))
    end = newest + half + missed_after * step
    expected = with_backup = 0
    for index in range(slots):
        slot_end = end - index * step
        slot_start = slot_end - step
        if slot_end <= oldest:
            break  # the job had no backups yet
        expected += 1
        if any(slot_start <= start < slot_end for start in starts):
            with_backup += 1
    return {
        "expected": expected,
        "with_backup": with_backup,
        "rate": round(with_backup / float(expected), 4) if expected else None,
        "window_days": round(min(expected * interval, window) / DAY, 2),
        "limited_by_retention": dense_horizon(retention, interval) < window,
    }


def _job_entry(host, job, listing, latest, now, settings, secrets):
    name = str(job.get("name", "?"))
    source = job.get("source") if isinstance(job.get("source"), dict) else {}
    storage = job.get("storage") if isinstance(job.get("storage"), dict) else {}
    schedule = job.get("schedule")
    scheduler = job.get("scheduler") or settings["scheduler"]
    gaps = report_schedule.intervals(schedule, scheduler) if schedule else None
    if gaps:
        interval, longest = float(gaps[0]), float(gaps[1])
        green_limit, amber_limit = 1.5 * longest, 3.0 * longest
        interval_source = "schedule"
    else:
        interval = settings["default_interval"]
        green_limit, amber_limit = settings["stale_after"], 2.0 * settings["stale_after"]
        interval_source = "default"
    entry = {
        "host": host,
        "job": name,
        "engine": source.get("engine"),
        "what": redact_text(source.get("database") or source.get("path") or "", secrets) or None,
        "storage": storage_location(storage),
        "storage_type": storage.get("type") or "local",
        "schedule": schedule if isinstance(schedule, str) else None,
        "interval_seconds": interval,
        "interval_source": interval_source,
        "green_below_seconds": green_limit,
        "red_from_seconds": amber_limit,
        "verify": "after each backup" if job.get("verify") else "not configured",
        "retention": {k: v for k, v in (job.get("retention") or {}).items() if k.startswith("keep_")}
        if isinstance(job.get("retention"), dict) else None,
        "error": None,
        "last_success": None,
        "last_attempt": None,
        "backups_kept": 0,
        "stored_bytes": 0,
        "newest_size": None,
        "history": [],
        "success_rate": None,
        "staleness": "red",
        "reasons": [],
    }
    if not isinstance(listing, dict) or "backups" not in listing:
        message = (listing or {}).get("msg") if isinstance(listing, dict) else None
        entry["error"] = redact_text(message or "no backup_info result", secrets)[:ERROR_LIMIT]
        entry["status"] = "critical"
        entry["reasons"].append("storage could not be listed")
        return entry
    backups = [b for b in listing["backups"] if isinstance(b, dict)]
    entry["backups_kept"] = len(backups)
    entry["stored_bytes"] = sum(int(b.get("stored_size") or 0) for b in backups)
    chart_start = parse_time(settings["chart_start"])
    for backup in backups:
        started = parse_time(backup.get("started"))
        if started and started >= chart_start:
            entry["history"].append({"started": iso(started), "stored_size": int(backup.get("stored_size") or 0),
                                     "kind": backup.get("kind")})
    entry["history"].reverse()  # oldest first, for the chart
    attempt = listing.get("last_attempt")
    if isinstance(attempt, dict):
        entry["last_attempt"] = {
            "status": attempt.get("status"),
            "started": attempt.get("started"),
            "finished": attempt.get("finished"),
            "error": redact_text(attempt.get("error"), secrets)[:ERROR_LIMIT] if attempt.get("error") else None,
        }
    newest = backups[0] if backups else None
    if newest:
        manifest = {}
        latest_backup = (latest or {}).get("latest") if isinstance(latest, dict) else None
        if isinstance(latest_backup, dict) and latest_backup.get("manifest_key") == newest.get("manifest_key"):
            manifest = latest_backup.get("manifest") or {}
        started = parse_time(newest.get("started"))
        finished = parse_time(manifest.get("finished")) or started
        entry["newest_size"] = int(newest.get("stored_size") or 0)
        entry["last_success"] = {
            "manifest_key": newest.get("manifest_key"),
            "kind": newest.get("kind"),
            "started": iso(started),
            "finished": iso(finished),
            "age_seconds": max(0, int((now - finished).total_seconds())) if finished else None,
            "stored_size": entry["newest_size"],
            "raw_size": manifest.get("raw_size"),
            "duration_seconds": manifest.get("duration_seconds"),
            "compression": manifest.get("compression"),
            "encrypted": bool(manifest.get("encryption")) if manifest else None,
        }
        if not entry["engine"]:
            entry["engine"] = manifest.get("engine")
        age = (now - finished).total_seconds() if finished else math.inf
        entry["staleness"] = "green" if age < green_limit else ("amber" if age < amber_limit else "red")
        scheduled = [parse_time(b.get("started")) for b in backups if b.get("kind") != "manual"]
        entry["success_rate"] = success_rate([s for s in scheduled if s], interval, now,
                                             settings["window_days"] * DAY, job.get("retention"))
    if entry["last_success"] is None:
        entry["reasons"].append("never backed up")
    elif entry["staleness"] == "red":
        entry["reasons"].append("last success too old")
    elif entry["staleness"] == "amber":
        entry["reasons"].append("last success getting old")
    status = "ok" if entry["staleness"] == "green" else ("warning" if entry["staleness"] == "amber" else "critical")
    attempt_status = (entry["last_attempt"] or {}).get("status")
    if attempt_status == "failed":
        entry["reasons"].insert(0, "last attempt failed")
        status = "critical"
    elif attempt_status not in (None, "ok"):
        entry["reasons"].append("last attempt record %s" % attempt_status)
        status = "critical" if status == "critical" else "warning"
    if listing.get("incomplete"):
        entry["reasons"].append("%d object(s) without a manifest" % len(listing["incomplete"]))
        status = "critical" if status == "critical" else "warning"
    entry["status"] = status
    return entry


def _settings(now, stale_after, window_days, chart_days, default_interval, scheduler):
    chart_days = int(chart_days)
    window_days = int(window_days)
    if chart_days < 1 or window_days < 1:
        raise ValueError("window_days and chart_days must be 1 or more")
    # The chart's window ends at the next UTC midnight, so it moves once a day, not with every run.
    day_end = datetime.datetime(now.year, now.month, now.day, tzinfo=datetime.timezone.utc) + datetime.timedelta(days=1)
    return {
        "stale_after": parse_duration(stale_after, "stale_after"),
        "default_interval": parse_duration(default_interval, "default_interval"),
        "window_days": window_days,
        "chart_days": chart_days,
        "chart_start": iso(day_end - datetime.timedelta(days=chart_days)),
        "chart_end": iso(day_end),
        "scheduler": scheduler or "systemd",
    }


def fingerprint(report):
    """SHA-256 of the report without what moves with the clock alone (generated_at, ages)."""
    stable = dict(report)
    stable.pop("generated_at", None)
    stable.pop("fingerprint", None)
    stable["jobs"] = []
    for job in report.get("jobs", []):
        job = dict(job)
        if job.get("last_success"):
            job["last_success"] = dict(job["last_success"], age_seconds=None)
        stable["jobs"].append(job)
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def build_report(data, now=None, stale_after="26h", window_days=30, chart_days=90, default_interval="1d",
                 scheduler="systemd", title="Backup status", hosts=None):
    """The report dict. ``data``: [{host, jobs: [job], listings: [backup_info result], latest: [...]}].

    With ``hosts`` (names in the order of ``data``), an item that is None is a host without data.
    """
    now = parse_time(now) if now else datetime.datetime.now(datetime.timezone.utc)
    if now is None:
        raise ValueError("now is not an ISO 8601 time")
    settings = _settings(now, stale_after, window_days, chart_days, default_interval, scheduler)
    jobs, host_problems = [], []
    names = list(hosts or [])
    for position, item in enumerate(data or []):
        if item is None and position < len(names):
            item = {"host": names[position], "missing": True}
        if not isinstance(item, dict):
            continue
        host = str(item.get("host", "?"))
        if item.get("missing"):
            host_problems.append({"host": host, "error": "no data: the host was unreachable or failed"})
            continue
        job_list = [j for j in item.get("jobs") or [] if isinstance(j, dict)]
        listings = list(item.get("listings") or [])
        latest = list(item.get("latest") or [])
        for index, job in enumerate(job_list):
            secrets = collect_secrets(job)
            listing = listings[index] if index < len(listings) else None
            newest = latest[index] if index < len(latest) else None
            jobs.append(_job_entry(host, job, listing, newest, now, settings, secrets))
    jobs.sort(key=lambda j: (_SEVERITY.get(j["status"], 0), j["host"], j["job"]))
    locations = {}
    seen = set()
    for job in jobs:
        location = locations.setdefault(job["storage"], {"location": job["storage"], "type": job["storage_type"],
                                                         "jobs": 0, "backups": 0, "stored_bytes": 0})
        if (job["storage"], job["job"]) in seen:
            continue  # the same job folder listed from two hosts counts once
        seen.add((job["storage"], job["job"]))
        location["jobs"] += 1
        location["backups"] += job["backups_kept"]
        location["stored_bytes"] += job["stored_bytes"]
    counts = {name: sum(1 for j in jobs if j["status"] == name) for name in ("ok", "warning", "critical")}
    counts.update({
        "jobs": len(jobs),
        "hosts": len({j["host"] for j in jobs} | {h["host"] for h in host_problems}),
        "hosts_without_data": len(host_problems),
        "never": sum(1 for j in jobs if j["last_success"] is None),
        "last_attempt_failed": sum(1 for j in jobs if (j["last_attempt"] or {}).get("status") == "failed"),
        "backups": sum(loc["backups"] for loc in locations.values()),
        "stored_bytes": sum(loc["stored_bytes"] for loc in locations.values()),
    })
    overall = "critical" if counts["critical"] or host_problems else ("warning" if counts["warning"] else "ok")
    report = {
        "format_version": FORMAT_VERSION,
        "title": title,
        "generated_at": iso(now),
        "status": overall,
        "counts": counts,
        "settings": {
            "window_days": settings["window_days"],
            "chart_days": settings["chart_days"],
            "chart_start": settings["chart_start"],
            "chart_end": settings["chart_end"],
            "stale_after_seconds": settings["stale_after"],
            "default_interval_seconds": settings["default_interval"],
        },
        "hosts_without_data": host_problems,
        "jobs": jobs,
        "locations": sorted(locations.values(), key=lambda loc: (-loc["stored_bytes"], loc["location"])),
    }
    report["fingerprint"] = fingerprint(report)
    return report
