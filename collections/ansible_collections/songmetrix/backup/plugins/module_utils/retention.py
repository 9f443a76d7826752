"""GFS retention planning: which backups a policy keeps, and why. A pure function; nothing is deleted here.

Semantics follow restic's `forget` (and borg's `prune`):
- keep_last N keeps the N newest backups;
- keep_hourly/daily/weekly/monthly/yearly N keep the newest backup of each of the N most recent
  periods that have backups (weeks are ISO weeks, Monday to Sunday); empty periods do not count;
- -1 means no limit; rules are independent, and a backup kept by any rule is kept;
- when a period rule finds fewer periods than its N, the oldest backup is kept as well ("oldest"),
  so a young history keeps its first backup (restic >= 0.17, borg >= 1.2);
- keep_within keeps every backup newer than the newest backup minus a duration (10d, 2w, 6m, 1y, 36h);
- periods are taken in the job's timezone, so "daily" means the job's calendar days, DST included.
"""

import datetime
import re

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

PERIOD_RULES = ("hourly", "daily", "weekly", "monthly", "yearly")
COUNT_RULES = ("last",) + PERIOD_RULES
POLICY_KEYS = tuple("keep_%s" % rule for rule in COUNT_RULES) + ("keep_within",)
_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?$")


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


def parse_duration(text):
    """(years, months, days, hours) of a keep_within duration such as '1y6m', '2w', '10d', '36h'."""
    match = _DURATION_RE.match(str(text or "").strip())
    if not text or not match or not any(match.groups()):
        raise ValidationError(
            "keep_within %r is not a duration: use a number with y, m, w, d or h, such as 10d, 2w, 6m, 1y or 36h"
            % (text,)
        )
    years, months, weeks, days, hours = (int(part or 0) for part in match.groups())
    return years, months, weeks * 7 + days, hours


def check_policy(policy):
    """The policy with every rule present (0 for unset), or ValidationError; an empty policy is an error."""
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
    within = policy.get("keep_within")
    checked["within"] = parse_duration(within) if within not in (None, "") else None
    if not any(checked[rule] for rule in COUNT_RULES) and checked["within"] is None:
        # "Keep nothing" is never what an empty or misspelt policy means.
        raise ValidationError("the retention policy sets no rule; set at least one of %s" % ", ".join(POLICY_KEYS))
    return checked


def _months_back(moment, years, months):
    """``moment`` moved back by whole months, the day clamped to the target month's length."""
    total = moment.year * 12 + (moment.month - 1) - (years * 12 + months)
    year, month = divmod(total, 12)
    month += 1
    next_month = datetime.date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - datetime.timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def within_cutoff(newest_local, duration):
    """The time after which keep_within keeps backups, counted back from the newest backup."""
    years, months, days, hours = duration
    cutoff = _months_back(newest_local, years, months)
    return cutoff - datetime.timedelta(days=days, hours=hours)


class Plan(object):
    """keep: [(backup, [reasons])] newest first; delete: [backup] newest first."""

    def __init__(self, keep, delete):
        self.keep = keep
        self.delete = delete


def plan(backups, policy, timezone="UTC", started=lambda backup: backup.started, now=None):
    """Decide which ``backups`` the ``policy`` keeps; ``started(backup)`` is an aware datetime.

    Backups dated after ``now`` (a clock that jumped, a wrong stamp) are kept with the reason
    "future" and left out of every rule, so they cannot push real backups out of their periods.
    """
    from zoneinfo import ZoneInfo

    rules = check_policy(policy)
    zone = ZoneInfo(timezone)
    ordered = sorted(backups, key=started, reverse=True)
    reasons = {id(backup): [] for backup in ordered}
    future = [b for b in ordered if now is not None and started(b) > now]
    for backup in future:
        reasons[id(backup)].append("future")
    candidates = [b for b in ordered if now is None or started(b) <= now]
    local = [started(b).astimezone(zone) for b in candidates]

    if rules["last"]:
        for backup in candidates if rules["last"] == -1 else candidates[: rules["last"]]:
            reasons[id(backup)].append("last")
    for rule in PERIOD_RULES:
        if rules[rule]:
            _apply_period_rule(rule, rules[rule], candidates, local, reasons)
    if rules["within"] is not None and candidates:
        cutoff = within_cutoff(local[0], rules["within"])
        for backup, moment in zip(candidates, local):
            if moment > cutoff:
                reasons[id(backup)].append("within")

    keep = [(b, reasons[id(b)]) for b in ordered if reasons[id(b)]]
    delete = [b for b in ordered if not reasons[id(b)]]
    return Plan(keep, delete)


def _apply_period_rule(rule, count, candidates, local, reasons):
    """Keep the newest backup of each of the ``count`` newest periods; the oldest too if they run short."""
    remaining = count
    last_period = None
    kept_oldest = False
    for index, (backup, moment) in enumerate(zip(candidates, local)):
        if remaining == 0:
            return
        period = _period(rule, moment)
        if period != last_period:
            reasons[id(backup)].append(rule)
            last_period = period
            remaining -= 1
            kept_oldest = index == len(candidates) - 1
    if remaining > 0 and candidates and not kept_oldest:
        reasons[id(candidates[-1])].append("%s (oldest)" % rule)
