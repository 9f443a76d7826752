"""Schedules of backup jobs: cron expressions and systemd OnCalendar strings, checked before use.

Used by the filter plugin ``songmetrix.backup.schedule_plan`` (role backup_schedule) on the
controller. Pure Python (>= 3.9); ``systemd-analyze calendar`` is asked as well when it exists.
"""

import re
import shutil
import subprocess

JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

SCHEDULERS = ("systemd", "cron")

# --- cron (5 fields, Vixie/cronie syntax) -------------------------------------------------------

CRON_SPECIAL = {
    "@hourly": "hourly",
    "@daily": "daily",
    "@midnight": "daily",
    "@weekly": "weekly",
    "@monthly": "monthly",
    "@yearly": "yearly",
    "@annually": "annually",
}
CRON_FIELDS = (
    # name, low, high, names
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day", 1, 31, None),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("weekday", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)


def _cron_value(text, low, high, names, field):
    if names and text.lower() in names:
        return names.index(text.lower()) + (1 if field == "month" else 0)
    if not text.isdigit():
        raise ValueError("%s: %r is not a number%s" % (field, text, " or a name" if names else ""))
    value = int(text)
    if value < low or value > high:
        raise ValueError("%s: %d is outside %d-%d" % (field, value, low, high))
    return value


def _cron_field(text, low, high, names, field):
    if text == "":
        raise ValueError("%s is empty" % field)
    for item in text.split(","):
        if item == "":
            raise ValueError("%s: empty element in %r" % (field, text))
        base, sep, step = item.partition("/")
        if sep:
            if not step.isdigit() or int(step) < 1 or int(step) > high - low + 1:
                raise ValueError("%s: step %r must be a number from 1 to %d" % (field, step, high - low + 1))
        if base == "*":
            continue
        if "-" in base:
            first, _, last = base.partition("-")
            a = _cron_value(first, low, high, names, field)
            b = _cron_value(last, low, high, names, field)
            if a > b:
                raise ValueError("%s: range %r runs backwards" % (field, base))
        else:
            if sep:
                # "5/10" is cronie's "5-max/10"; Vixie cron refuses it. Keep to the portable form.
                raise ValueError("%s: a step needs '*' or a range before it (%r)" % (field, item))
            _cron_value(base, low, high, names, field)


def parse_cron(expression):
    """Check a 5-field cron expression (or @daily & co.); return the ansible.builtin.cron fields.

    Returns {'special_time': 'daily'} or {'minute': .., 'hour': .., 'day': .., 'month': .., 'weekday': ..}.
    Raises ValueError with a readable reason.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("a cron schedule must be a non-empty string")
    if any(ch in expression for ch in ("\n", "\r", "\x00", "%")):
        raise ValueError("a cron schedule must not contain line breaks or '%'")
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() == "@reboot":
            raise ValueError("@reboot is not a backup schedule")
        if text.lower() not in CRON_SPECIAL:
            raise ValueError("unknown cron shorthand %r (known: %s)" % (text, ", ".join(sorted(CRON_SPECIAL))))
        return {"special_time": CRON_SPECIAL[text.lower()]}
    fields = text.split()
    if len(fields) != 5:
        raise ValueError("a cron schedule has 5 fields (minute hour day month weekday), %r has %d"
                         % (text, len(fields)))
    result = {}
    for value, (name, low, high, names) in zip(fields, CRON_FIELDS):
        _cron_field(value, low, high, names, name)
        result[name] = value
    return result


# --- systemd OnCalendar -------------------------------------------------------------------------

ONCALENDAR_SHORTHANDS = ("minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually",
                         "quarterly", "semiannually")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun",
            "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_COMPONENT_ITEM = re.compile(r"^(\*|\d+(\.\.\d+)?)(/\d+)?$")
_SECOND_ITEM = re.compile(r"^(\*|\d+(\.\d+)?(\.\.\d+(\.\d+)?)?)(/\d+(\.\d+)?)?$")


def _is_timezone(token):
    if token.upper() == "UTC":
        return True
    try:
        from zoneinfo import ZoneInfo
        ZoneInfo(token)
        return "/" in token or token.isalpha()
    except Exception:
        return False


def _check_component(text, low, high, label, allow_fraction=False):
    if text == "":
        raise ValueError("%s is empty" % label)
    for item in text.split(","):
        pattern = _SECOND_ITEM if allow_fraction else _COMPONENT_ITEM
        if not pattern.match(item):
            raise ValueError("%s: %r is not '*', a number, a range a..b or a repetition x/n" % (label, item))
        base = item.split("/")[0]
        if base == "*":
            continue
        for number in base.split(".."):
            value = float(number)
            if value < low or value > high:
                raise ValueError("%s: %s is outside %d-%d" % (label, number, low, high))


def _check_weekdays(token):
    for item in token.split(","):
        parts = re.split(r"\.\.|-", item)
        if len(parts) > 2 or not all(p.lower() in WEEKDAYS for p in parts):
            raise ValueError("%r is not a weekday list such as Mon..Fri or Sat,Sun" % token)


def _check_date(token):
    # [YEAR-]MONTH-DAY, DAY may be "~N" (counted from the month's end)
    last = "~" in token
    text = token.replace("~", "-")
    parts = text.split("-")
    if len(parts) == 3:
        year, month, day = parts
        _check_component(year, 1970, 2199, "year")
    elif len(parts) == 2:
        month, day = parts
    else:
        raise ValueError("%r is not a date such as *-*-* or 2026-01-01" % token)
    _check_component(month, 1, 12, "month")
    _check_component(day, 1, 31, "day" if not last else "day from the month's end")


def _check_time(token):
    parts = token.split(":")
    if len(parts) not in (2, 3):
        raise ValueError("%r is not a time such as 02:30 or 02:30:00" % token)
    _check_component(parts[0], 0, 23, "hour")
    _check_component(parts[1], 0, 59, "minute")
    if len(parts) == 3:
        _check_component(parts[2], 0, 59.999999, "second", allow_fraction=True)


def split_timezone(spec):
    """('spec without timezone', 'timezone' or '') for an OnCalendar string."""
    tokens = spec.split()
    if len(tokens) > 1 and _is_timezone(tokens[-1]):
        return " ".join(tokens[:-1]), tokens[-1]
    return spec.strip(), ""


def check_oncalendar_syntax(spec):
    """A Python check of the OnCalendar syntax (systemd.time(7)); raises ValueError."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("an OnCalendar schedule must be a non-empty string")
    if any(ch in spec for ch in ("\n", "\r", "\x00")):
        raise ValueError("an OnCalendar schedule must not contain line breaks")
    body, _tz = split_timezone(spec)
    tokens = body.split()
    if len(tokens) == 1 and tokens[0].lower() in ONCALENDAR_SHORTHANDS:
        return
    if not tokens:
        raise ValueError("%r has no date or time" % spec)
    if tokens[0][:3].lower() in WEEKDAYS and not tokens[0][0].isdigit() and tokens[0][0] != "*":
        _check_weekdays(tokens.pop(0))
    if tokens and ":" not in tokens[0]:
        _check_date(tokens.pop(0))
    if tokens:
        _check_time(tokens.pop(0))
    if tokens:
        raise ValueError("unexpected %r in %r (a timezone must be an IANA name such as Europe/Berlin)"
                         % (" ".join(tokens), spec))


def systemd_analyze_calendar(spec, executable=None, timeout=10):
    """Ask ``systemd-analyze calendar``; None when it is not installed, else (ok, message)."""
    path = executable or shutil.which("systemd-analyze")
    if not path:
        return None
    try:
        proc = subprocess.run([path, "calendar", "--iterations=1", spec], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stderr or proc.stdout or b"").decode("utf-8", errors="replace").strip()
    return proc.returncode == 0, text


def check_oncalendar(spec, use_systemd_analyze=True):
    """Raise ValueError when ``spec`` is not a valid OnCalendar string; return how it was checked."""
    check_oncalendar_syntax(spec)
    if use_systemd_analyze:
        answer = systemd_analyze_calendar(spec)
        if answer is not None:
            ok, text = answer
            if not ok:
                reason = text.splitlines()[-1] if text else "no reason given"
                raise ValueError("systemd-analyze calendar refused it: %s" % reason)
            return "systemd-analyze"
    return "python"


# --- whole jobs ---------------------------------------------------------------------------------

TIMESPAN_RE = re.compile(r"^\s*(\d+\s*(usec|us|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|"
                         r"days|day|d|weeks|week|w|months|month|M|years|year|y)?\s*)+$")


def unit_stem(name):
    """The name part of units, wrappers and locks of a job."""
    return "songmetrix-backup-" + name


def cron_file_name(name):
    """/etc/cron.d ignores files whose names have dots (run-parts rules)."""
    return "songmetrix-backup-" + name.replace(".", "_")


def plan(jobs, default_scheduler="systemd", default_timezone="", randomized_delay="15m",
         use_systemd_analyze=True):
    """Check every job's schedule; return {'jobs': [...], 'errors': [...], 'names': [...]}.

    Only enabled jobs with a ``schedule`` are planned. Every error names its job.
    """
    errors = []
    planned = []
    seen = set()
    if not isinstance(jobs, (list, tuple)):
        return {"jobs": [], "errors": ["songmetrix_backup_jobs must be a list of jobs"], "names": []}
    if default_scheduler not in SCHEDULERS:
        errors.append("the default scheduler %r is not one of %s" % (default_scheduler, ", ".join(SCHEDULERS)))
    for index, job in enumerate(jobs):
        if not isinstance(job, dict):
            errors.append("job #%d is not a dict" % (index + 1))
            continue
        name = job.get("name")
        label = "job %r" % (name,) if name else "job #%d" % (index + 1)
        if not isinstance(name, str) or not JOB_NAME_RE.match(name):
            errors.append("%s: the name must be 1-100 letters, digits, '.', '_' or '-', starting with a "
                          "letter or digit" % label)
            continue
        if name in seen:
            errors.append("%s: the name is used by another job of this host" % label)
            continue
        seen.add(name)
        schedule = job.get("schedule")
        enabled = job.get("enabled", True)
        if isinstance(enabled, str):
            enabled = enabled.strip().lower() in ("1", "true", "yes", "on")
        if schedule is None or schedule == "" or not enabled:
            continue
        scheduler = job.get("scheduler") or default_scheduler
        if scheduler not in SCHEDULERS:
            errors.append("%s: scheduler %r is not one of %s" % (label, scheduler, ", ".join(SCHEDULERS)))
            continue
        if not isinstance(schedule, str):
            errors.append("%s: schedule must be a string (a cron expression or an OnCalendar string)" % label)
            continue
        timezone = job.get("timezone") or default_timezone or ""
        if timezone and not _is_timezone(timezone):
            errors.append("%s: unknown timezone %r (use an IANA name such as UTC or Europe/Berlin)"
                          % (label, timezone))
            continue
        delay = job.get("randomized_delay", randomized_delay)
        delay = "0" if delay in (None, "", 0) else str(delay)
        if not TIMESPAN_RE.match(delay):
            errors.append("%s: randomized_delay %r is not a systemd time span such as 15m or 1h 30m"
                          % (label, delay))
            continue
        entry = {
            "name": name,
            "scheduler": scheduler,
            "schedule": schedule.strip(),
            "timezone": timezone,
            "randomized_delay": delay,
            "unit": unit_stem(name),
            "cron_file": cron_file_name(name),
        }
        try:
            if scheduler == "cron":
                entry["cron"] = parse_cron(schedule)
                entry["checked_by"] = "python"
            else:
                body, own_tz = split_timezone(schedule.strip())
                if own_tz and timezone and job.get("timezone") and own_tz != timezone:
                    raise ValueError("the schedule names timezone %s but the job's timezone is %s"
                                     % (own_tz, timezone))
                on_calendar = schedule.strip() if own_tz or not timezone else "%s %s" % (body, timezone)
                entry["on_calendar"] = on_calendar
                entry["timezone"] = own_tz or timezone
                entry["checked_by"] = check_oncalendar(on_calendar, use_systemd_analyze)
        except ValueError as exc:
            kind = "cron expression" if scheduler == "cron" else "OnCalendar string"
            errors.append("%s: schedule %r is not a valid %s: %s" % (label, schedule, kind, exc))
            continue
        planned.append(entry)
    return {"jobs": planned, "errors": errors, "names": [j["name"] for j in planned]}
