#!/usr/bin/env python3
"""Make the restic fixtures for the retention planner's unit tests.

    scripts/make-restic-retention-fixtures.py     (needs Debian's restic package; about 3 minutes)

Creates a throwaway restic repository, stores one snapshot per generated timestamp
(`restic backup --time`, with TZ set to the job timezone so restic's periods are that zone's wall
clock), runs `restic forget --dry-run --json` for several policies, and writes the snapshot times
and what restic keeps to
collections/ansible_collections/songmetrix/backup/tests/unit/plugins/module_utils/fixtures/restic_forget.json.

The timestamps are generated from a fixed seed: bursts of several backups an hour, gaps of weeks,
and the DST changes of Europe/Berlin and ISO week 2020-W53 inside the range. They all lie in the
past (restic leaves snapshots newer than its clock out of keep-within's reference), and -1
("unlimited") and keep-within in weeks are not used: Debian 12's restic 0.14 knows neither.
"""

import datetime
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "collections/ansible_collections/songmetrix/backup/tests/unit/plugins/module_utils/fixtures"
TIMEZONE = "Europe/Berlin"
POLICIES = [
    {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12},
    {"keep_last": 3, "keep_hourly": 24, "keep_daily": 10},
    {"keep_weekly": 60},
    {"keep_monthly": 6, "keep_yearly": 5},
    {"keep_daily": 400},
    {"keep_within": "14d", "keep_monthly": 3},
    {"keep_last": 1, "keep_hourly": 30, "keep_weekly": 10, "keep_yearly": 3},
]
FLAGS = {"keep_last": "--keep-last", "keep_hourly": "--keep-hourly", "keep_daily": "--keep-daily",
         "keep_weekly": "--keep-weekly", "keep_monthly": "--keep-monthly", "keep_yearly": "--keep-yearly",
         "keep_within": "--keep-within"}


def timestamps():
    rng = random.Random(20261123)
    moment = datetime.datetime(2020, 10, 1, 1, 0, tzinfo=datetime.timezone.utc)
    end = datetime.datetime(2023, 2, 1, tzinfo=datetime.timezone.utc)
    found = []
    while moment < end:
        found.append(moment)
        roll = rng.random()
        if roll < 0.15:
            step = datetime.timedelta(minutes=rng.randint(5, 50))  # a burst inside the hour
        elif roll < 0.17:
            step = datetime.timedelta(days=rng.randint(14, 30))  # a gap of weeks
        else:
            step = datetime.timedelta(hours=rng.randint(6, 60))
        moment += step
    # Around the DST changes and the turn of ISO week 2020-W53, on purpose.
    for stamp in ("2021-03-28T00:30", "2021-03-28T01:30", "2021-10-31T00:15", "2021-10-31T01:15",
                  "2020-12-31T22:00", "2021-01-03T22:30", "2021-01-03T23:30"):
        found.append(datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M").replace(tzinfo=datetime.timezone.utc))
    return sorted(set(found))


def unambiguous(stamps, zone):
    """Leave out times in the repeated hour of autumn DST: `restic backup --time` takes a local wall
    clock, and 02:30 on that night names two instants. (The planner's own unit tests cover that hour.)"""
    kept = []
    for stamp in stamps:
        local = stamp.astimezone(zone).replace(tzinfo=None)
        instants = {local.replace(tzinfo=zone, fold=fold).utcoffset() for fold in (0, 1)}
        if len(instants) == 1:
            kept.append(stamp)
    return kept


def restic(env, *args):
    return subprocess.run(["restic", *args], env=env, check=True, capture_output=True, text=True).stdout


def main():
    zone = ZoneInfo(TIMEZONE)
    stamps = unambiguous(timestamps(), zone)
    with tempfile.TemporaryDirectory() as work:
        env = dict(os.environ, RESTIC_REPOSITORY=os.path.join(work, "repo"), RESTIC_PASSWORD="fixture",
                   TZ=TIMEZONE, RESTIC_CACHE_DIR=os.path.join(work, "cache"))
        data = os.path.join(work, "data")
        os.mkdir(data)
        Path(data, "f").write_text("x")
        restic(env, "init")
        for index, stamp in enumerate(stamps):
            local = stamp.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
            restic(env, "backup", "--quiet", "--host", "h", "--time", local, data)
            if index % 50 == 0:
                print("snapshot %d/%d" % (index + 1, len(stamps)), file=sys.stderr)
        cases = []
        for policy in POLICIES:
            argv = ["forget", "--dry-run", "--json"]
            for key, value in policy.items():
                argv += [FLAGS[key], str(value)]
            groups = json.loads(restic(env, *argv))
            keep = sorted(
                datetime.datetime.fromisoformat(snap["time"][:19] + snap["time"][-6:]).astimezone(
                    datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                for group in groups for snap in (group.get("keep") or [])
            )
            cases.append({"policy": policy, "restic_keep": keep})
    version = subprocess.run(["restic", "version"], check=True, capture_output=True, text=True).stdout.strip()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with open(OUTPUT / "restic_forget.json", "w") as handle:
        json.dump({"restic": version, "timezone": TIMEZONE,
                   "snapshots": [s.strftime("%Y-%m-%dT%H:%M:%SZ") for s in stamps], "cases": cases}, handle, indent=1)
        handle.write("\n")
    print("wrote %s: %d snapshots, %d policies" % (OUTPUT / "restic_forget.json", len(stamps), len(cases)))


if __name__ == "__main__":
    main()
