"""Checks on user input that must pass before any process starts or any byte is written."""

import datetime
import re

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# One storage prefix segment: the same alphabet as job names; '..' and empty segments are refused.
PREFIX_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
BYTE_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGTP]?)(?:I?B)?\s*$", re.I)
BYTE_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4, "P": 1024 ** 5}


def job_name(name):
    if not isinstance(name, str) or not JOB_NAME_RE.match(name):
        raise ValidationError(
            "job name %r is not valid: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
            % (name,)
        )
    return name


def storage_prefix(prefix):
    """Normalise a storage prefix ('a/b', '/a/b/', '' all allowed) or refuse it."""
    if prefix is None:
        return ""
    parts = [p for p in str(prefix).strip("/").split("/") if p != ""]
    for part in parts:
        if not PREFIX_SEGMENT_RE.match(part) or part in (".", ".."):
            raise ValidationError(
                "storage prefix %r is not valid: each '/'-separated part must be letters, digits, '.', '_' or '-' "
                "and must not be '.' or '..'" % (prefix,)
            )
    return "/".join(parts)


def timezone_name(name):
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # pragma: no cover - Python < 3.9 targets are not supported
        raise ValidationError("the zoneinfo module (Python >= 3.9) is needed to check timezone %r" % (name,))
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("unknown timezone %r: use an IANA name such as UTC or Europe/Berlin" % (name,))
    return name


def no_control_chars(label, value):
    """Refuse NUL and newlines in values that end up in argv or option files."""
    if value is None:
        return value
    text = str(value)
    if any(ch in text for ch in ("\x00", "\n", "\r")):
        raise ValidationError("%s must not contain NUL or line breaks" % label)
    return value


def timestamp(label, text, end_of_day=False):
    """An aware UTC datetime from ISO 8601 ('2026-11-23', '2026-11-23T02:00:00Z', '...+01:00').

    A bare date means the start of that day in UTC, or its last second with ``end_of_day``
    (so that until: 2026-11-23 includes the whole day).
    """
    if text is None:
        return None
    value = str(text).strip()
    try:
        if len(value) == 10:
            moment = datetime.datetime.strptime(value, "%Y-%m-%d")
            if end_of_day:
                moment += datetime.timedelta(days=1, seconds=-1)
        else:
            moment = datetime.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        raise ValidationError(
            "%s %r is not an ISO 8601 date or time, such as 2026-11-23 or 2026-11-23T02:00:00Z" % (label, text)
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def byte_size(label, value):
    """Bytes from an int or a size such as '10G', '512MiB', '1048576' (binary units); None or '' stays None."""
    if value is None or value == "":
        return None
    match = BYTE_SIZE_RE.match(str(value))
    if not match or isinstance(value, bool):
        raise ValidationError("%s must be a number of bytes or a size like 512M or 10G, not %r" % (label, value))
    return int(match.group(1)) * BYTE_UNITS[match.group(2).upper()]
