# Copyright: songmetrix.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How often a job is expected to run, from its schedule (for the status report; controller side).

``intervals(schedule, scheduler)`` returns ``(typical, longest)`` gaps between two runs in seconds,
or None when the schedule is missing or not understood. Cron expressions (5 fields, names, ranges,
steps, lists, the @ macros) and the common systemd OnCalendar forms (the shorthands ``hourly``,
``daily``, ..., and ``[weekdays] [date] time`` with ``*``, lists, ranges and ``/`` steps) are read;
anything else (``~`` last days, seconds lists, timezone suffixes other than a zone name) is not.
The gaps are computed over two calendar years, so weekday-only and monthly schedules get their
real longest gap (a weekend, a 31-day month). DST shifts are ignored.
"""

from __future__ import annotations

import datetime

_MONTHS = {name: i for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_CRON_MACROS = {
    "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
}
_SYSTEMD_SHORTHANDS = {
    "minutely": "* * * * *", "hourly": "0 * * * *", "daily": "0 0 * * *", "weekly": "0 0 * * 1",
    "monthly": "0 0 1 * *", "yearly": "0 0 1 1 *", "annually": "0 0 1 1 *",
    "quarterly": "0 0 1 1,4,7,10 *", "semiannually": "0 0 1 1,7 *",
}
_SYSTEMD_DAYS = {name: i for i, name in enumerate(
    ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"))}
_SPAN_START = datetime.date(2027, 1, 1)  # two years, one of them a leap year
_SPAN_DAYS = 731


def _number(text, names):
    text = text.strip().lower()
    if text in names:
        return names[text]
    if text[:3] in names:
        return names[text[:3]]
    return int(text)


_SYSTEMD_DAYS_SHORT = {name[:3]: i for name, i in _SYSTEMD_DAYS.items()}


def _field(text, low, high, names=None, range_sep="-"):
    """The set of values of one field ('*', '1-5', '*/15', 'mon-fri', '1,15'), or ValueError."""
    names = names or {}
    values = set()
    for part in text.split(","):
        part, _slash, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError("step %r" % step_text)
        if part in ("*", ""):
            if part == "" and not step_text:
                raise ValueError("empty field")
            first, last = low, high
        elif range_sep in part:
            first_text, last_text = part.split(range_sep, 1)
            first, last = _number(first_text, names), _number(last_text, names)
        else:
            first = _number(part, names)
            last = high if step_text else first
        if first < low or last > high or first > last:
            raise ValueError("%r outside %d-%d" % (part, low, high))
        values.update(range(first, last + 1, step))
    return values


def _cron_sets(expression):
    expression = _CRON_MACROS.get(expression.strip().lower(), expression)
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError("a cron expression has 5 fields")
    minutes = _field(fields[0], 0, 59)
    hours = _field(fields[1], 0, 23)
    days = _field(fields[2], 1, 31)
    months = _field(fields[3], 1, 12, _MONTHS)
    weekdays = {d % 7 for d in _field(fields[4], 0, 7, _DAYS)}
    return minutes, hours, days, months, weekdays, fields[2] != "*", fields[4] != "*"


def _gaps(minutes, hours, days, months, weekdays, days_restricted=False, weekdays_restricted=False):
    """(typical, longest) seconds between runs of a cron-like schedule, over two calendar years."""
    times = sorted(h * 60 + m for h in hours for m in minutes)
    matching = []
    for offset in range(_SPAN_DAYS):
        day = _SPAN_START + datetime.timedelta(days=offset)
        if day.month not in months:
            continue
        by_day, by_weekday = day.day in days, (day.weekday() + 1) % 7 in weekdays
        if days_restricted and weekdays_restricted:
            ok = by_day or by_weekday  # cron: either field matches when both are restricted
        else:
            ok = by_day and by_weekday
        if ok:
            matching.append(offset)
    if not times or len(matching) < 2:
        return None
    gaps = {}  # gap in minutes -> how often it occurs

    def add(gap, count=1):
        gaps[gap] = gaps.get(gap, 0) + count

    for first, second in zip(times, times[1:]):
        add(second - first, len(matching))
    for first, second in zip(matching, matching[1:]):
        add((second - first) * 1440 - times[-1] + times[0])
    ordered = sorted(gaps.items())
    total = sum(gaps.values())
    seen = 0
    typical = ordered[-1][0]
    for gap, count in ordered:
        seen += count
        if seen * 2 >= total:
            typical = gap
            break
    return typical * 60, ordered[-1][0] * 60


def _systemd_sets(expression):
    text = " ".join(expression.strip().lower().split())
    if text in _SYSTEMD_SHORTHANDS:
        return _cron_sets(_SYSTEMD_SHORTHANDS[text])
    parts = text.split(" ")
    # A trailing timezone name (Europe/Berlin, UTC) does not change the gaps.
    if parts and ("/" in parts[-1] and ":" not in parts[-1] and "-" not in parts[-1] or parts[-1] == "utc"):
        parts = parts[:-1]
    weekdays = set(range(7))
    weekdays_restricted = False
    if parts and parts[0][:1].isalpha():
        weekdays = set()
        for item in parts.pop(0).split(","):
            weekdays |= _field(item, 0, 6, _SYSTEMD_DAYS_SHORT, range_sep="..")
        weekdays_restricted = True
    date_text, time_text = "*-*-*", "00:00:00"
    for part in parts:
        if ":" in part:
            time_text = part
        elif "-" in part:
            date_text = part
        else:
            raise ValueError("unknown part %r" % part)
    date_fields = date_text.split("-")
    if len(date_fields) == 2:
        date_fields = ["*"] + date_fields
    if len(date_fields) != 3 or "~" in date_text:
        raise ValueError("date %r" % date_text)
    months = _field(date_fields[1], 1, 12, range_sep="..")
    days = _field(date_fields[2], 1, 31, range_sep="..")
    time_fields = time_text.split(":")
    if len(time_fields) not in (2, 3):
        raise ValueError("time %r" % time_text)
    hours = _field(time_fields[0], 0, 23, range_sep="..")
    minutes = _field(time_fields[1], 0, 59, range_sep="..")
    return minutes, hours, days, months, weekdays, False, weekdays_restricted


def intervals(schedule, scheduler="systemd"):
    """(typical, longest) seconds between two runs of ``schedule``, or None when it cannot be read."""
    if not isinstance(schedule, str) or not schedule.strip():
        return None
    try:
        if scheduler == "cron" or schedule.strip().startswith("@"):
            sets = _cron_sets(schedule)
        else:
            sets = _systemd_sets(schedule)
    except (ValueError, KeyError, IndexError):
        return None
    return _gaps(*sets)
