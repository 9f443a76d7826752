"""GFS retention planning: which backups a policy keeps, and why. A pure function; nothing is deleted here.

The rules and their arithmetic are restic's `forget` (its ApplyPolicy, checked against restic's own
test data in the unit tests):
- keep_last N keeps the N newest backups;
- keep_hourly/daily/weekly/monthly/yearly N keep the newest backup of each of the N most recent
  periods that have backups (weeks are ISO weeks, Monday to Sunday); empty periods do not count;
- -1 means no limit; rules are independent, and a backup kept by any rule is kept;
- a rule that still has counts left when it reaches the oldest backup keeps that one too
  ("daily (oldest)"), so a young history keeps its first backup; -1 always has counts left
  (restic >= 0.16);
- keep_within keeps every backup made after the newest backup minus a duration; the years,
  months and days go back on the job's wall clock with overflow rolled forward (Go's AddDate:
  1m before Mar 31 is "Feb 31", that is Mar 3), the hours as absolute time;
- keep_within_hourly/daily/weekly/monthly/yearly keep the newest backup of each period inside
  such a window (no count), and the oldest backup when it is inside;
- periods are taken in the job's timezone, so "daily" means the job's calendar days, DST included.
Backups dated in the future are this planner's own addition: kept, and left out of every rule.
"""

import datetime
import re

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

PERIOD_RULES = ("hourly", "daily", "weekly", "monthly", "yearly")
COUNT_RULES = ("last",) + PERIOD_RULES
WITHIN_PERIOD_RULES = tuple("within_" + period for period in PERIOD_RULES)
WITHIN_RULES = ("within",) + WITHIN_PERIOD_RULES
POLICY_KEYS = tuple("keep_" + rule for rule in COUNT_RULES + WITHIN_RULES)

# restic's duration syntax: whole numbers (ASCII digits), each with a unit, in any order. "w" (7 days)
# is this collection's own; a repeated unit, which restic would take silently, is refused.
_DURATION_RE = re.compile(r"^(?:[0-9]+[a-z])+$")
_DURATION_PART_RE = re.compile(r"([0-9]+)([a-z])")
_DURATION_UNITS = "ymwdh"
_UTC = datetime.timezone.utc
# Where a window reaches back beyond what datetime can hold, every backup is inside it.
_BEFORE_EVERYTHING = datetime.datetime.min.replace(tzinfo=_UTC)


def _period(rule, moment):
    """The period of ``moment`` (a local datetime) for a rule, as a comparable tuple."""
    if rule == "hourly":
        return (moment.year, moment.month, moment.day, moment.hour)
    if rule == "daily":
        return (moment.year, moment.month, moment.day)
    if rule == "weekly":
        iso = moment.isocalendar()
        return (iso[0], iso[1])
    if rule == "monthly":
        return (moment.year, moment.month)
    return (moment.year,)


def parse_duration(text, label="keep_within"):
    """(years, months, days, hours) of a duration such as '1y6m', '1d1m', '2w', '10d', '36h'."""
    source = str(text if text is not None else "").strip()
    problem = None
    parts = {}
    if not _DURATION_RE.match(source):
        problem = "use whole numbers, each followed by y, m, w, d or h, such as 10d, 2w, 6m, 1y6m or 36h"
    else:
        for number, unit in _DURATION_PART_RE.findall(source):
            if unit not in _DURATION_UNITS:
                problem = "%r is no unit: use y (years), m (months), w (weeks), d (days) or h (hours)" % unit
            elif unit in parts:
                problem = "%r is given twice" % unit
            parts[unit] = int(number)
    if problem:
        raise ValidationError("%s %r is not a duration: %s" % (label, text, problem))
    return (parts.get("y", 0), parts.get("m", 0), 7 * parts.get("w", 0) + parts.get("d", 0), parts.get("h", 0))


def check_policy(policy):
    """The policy with every rule present (0 or None when unset), or ValidationError.

    A policy that sets no rule is an error; a zero duration sets no rule (as in restic).
    """
    policy = dict(policy or {})
    unknown = sorted(set(policy) - set(POLICY_KEYS))
    if unknown:
        raise ValidationError("unknown retention option(s) %s; use %s" % (", ".join(unknown), ", ".join(POLICY_KEYS)))
    checked = {}
    for rule in COUNT_RULES:
        value = policy.get("keep_" + rule)
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, int) or value < -1:
            raise ValidationError("retention keep_%s must be a whole number, -1 for no limit, not %r" % (rule, value))
        checked[rule] = value
    for rule in WITHIN_RULES:
        text = policy.get("keep_" + rule)
        duration = parse_duration(text, "keep_" + rule) if text not in (None, "") else None
        checked[rule] = duration if duration and any(duration) else None
    if not any(checked[rule] for rule in COUNT_RULES + WITHIN_RULES):
        # "Keep nothing" is never what an empty or misspelt policy means.
        raise ValidationError("the retention policy sets no rule; set at least one of %s" % ", ".join(POLICY_KEYS))
    return checked


def _instant_of_wall_clock(wall, zone):
    """The instant of a naive wall clock in ``zone``, chosen as Go's time.Date chooses it.

    Go reads the wall clock as UTC, looks up the zone's offset there, and takes the offset in force
    at the instant that first guess gives. So a wall clock that happens twice gets the later instant
    in Berlin and the earlier in New York, and one that never happens is moved by the DST change.
    """
    as_utc = wall.replace(tzinfo=_UTC)
    guess = as_utc - as_utc.astimezone(zone).utcoffset()
    return as_utc - guess.astimezone(zone).utcoffset()


def within_cutoff(newest, duration, zone=None):
    """The instant (UTC) after which a keep_within window keeps backups: ``newest`` moved back by
    ``duration`` as restic does, years, months and days on the wall clock in ``zone`` (default:
    ``newest``'s own) with overflow rolled forward like Go's AddDate, then hours as absolute time."""
    years, months, days, hours = duration
    zone = zone or newest.tzinfo
    wall = newest.astimezone(zone).replace(tzinfo=None)
    try:
        year, month = divmod(wall.year * 12 + wall.month - 1 - years * 12 - months, 12)
        # Day overflow rolls forward: "Feb 31" is 30 days after Feb 1, that is Mar 3 (Mar 2 in a leap year).
        day = datetime.date(year, month + 1, 1) + datetime.timedelta(days=wall.day - 1 - days)
        moved = _instant_of_wall_clock(datetime.datetime.combine(day, wall.time()), zone)
        return moved - datetime.timedelta(hours=hours)
    except (OverflowError, ValueError):
        return _BEFORE_EVERYTHING


class Plan(object):
    """keep: [(backup, [reasons])] newest first; delete: [backup] newest first."""

    def __init__(self, keep, delete):
        self.keep = keep
        self.delete = delete


def plan(backups, policy, timezone="UTC", started=lambda backup: backup.started, now=None):
    """Decide which ``backups`` the ``policy`` keeps; ``started(backup)`` is an aware datetime.

    Backups dated after ``now`` (a clock that jumped, a wrong stamp) are kept with the reason
    "future" and left out of every rule, so they cannot push real backups out of their periods;
    keep_within windows count back from the newest backup that is not in the future.
    """
    from zoneinfo import ZoneInfo

    rules = check_policy(policy)
    zone = ZoneInfo(timezone)
    ordered = sorted(backups, key=started, reverse=True)  # stable: equal times keep their order
    reasons = {id(backup): [] for backup in ordered}
    future = [b for b in ordered if now is not None and started(b) > now]
    for backup in future:
        reasons[id(backup)].append("future")
    candidates = [b for b in ordered if now is None or started(b) <= now]
    if not candidates:
        return Plan([(b, reasons[id(b)]) for b in ordered], [])
    instants = [started(b) for b in candidates]
    local = [moment.astimezone(zone) for moment in instants]
    oldest = len(candidates) - 1

    def keep(rule, kept):
        for index, note in kept:
            reasons[id(candidates[index])].append(rule + note)

    for rule in COUNT_RULES:
        if rules[rule]:
            periods = range(len(candidates)) if rule == "last" else (_period(rule, moment) for moment in local)
            keep(rule, _bucket(periods, rules[rule], oldest))
    for rule in WITHIN_RULES:
        if rules[rule] is not None:
            cutoff = within_cutoff(local[0], rules[rule], zone)
            inside = sum(1 for moment in instants if moment > cutoff)  # newest first: a prefix
            if rule == "within":
                keep(rule, ((index, "") for index in range(inside)))
            else:
                period = rule[len("within_"):]
                keep(rule, _bucket((_period(period, moment) for moment in local[:inside]), -1, oldest))

    kept = [(b, reasons[id(b)]) for b in ordered if reasons[id(b)]]
    delete = [b for b in ordered if not reasons[id(b)]]
    return Plan(kept, delete)


def _bucket(periods, count, oldest):
    """restic's bucket over ``periods`` (one a backup, newest first): yields (index, note) for the
    first backup of each new period while ``count`` lasts (-1: no limit), and (``oldest``, " (oldest)")
    when the count is not used up when the oldest backup is reached in a period already kept."""
    remaining = count
    previous = None
    for index, period in enumerate(periods):
        if remaining == 0:
            return
        if period != previous:
            previous = period
            if remaining > 0:
                remaining -= 1
            yield index, ""
        elif index == oldest:
            yield index, " (oldest)"
