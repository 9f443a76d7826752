"""The healthcheck module's logic: source and storage checks, the worst status, the failure count.

A check *fails* when its overall status is critical (a warning is reported, not counted). The
result's ``changed`` is true only when the state file is (or, in check mode, would be) rewritten:
the probe object is created and deleted in the same run and is not a change.
"""

import re

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.health_source import CRITICAL, check_source, worst
from ansible_collections.songmetrix.backup.plugins.module_utils.health_state import track
from ansible_collections.songmetrix.backup.plugins.module_utils.health_storage import check_storage

SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.I)
UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def parse_size(label, value):
    """Bytes from an int or '500M', '20GiB', '1T' (binary units); None stays None."""
    if value is None or value == "":
        return None
    match = SIZE_RE.match(str(value))
    if not match:
        raise ValidationError("thresholds.%s must be a number of bytes or a size like 500M or 20G, not %r"
                              % (label, value))
    return int(match.group(1)) * UNITS[match.group(2).upper()]


def parse_thresholds(raw):
    raw = raw or {}
    out = dict(latency_warning_ms=raw.get("latency_warning_ms"), latency_critical_ms=raw.get("latency_critical_ms"))
    for name in ("size_warning", "size_critical", "free_warning", "free_critical"):
        out[name] = parse_size(name, raw.get(name))
    for low, high, rule in (("latency_warning_ms", "latency_critical_ms", "below"),
                            ("size_warning", "size_critical", "below"),
                            ("free_critical", "free_warning", "below")):
        if out[low] is not None and out[high] is not None and out[low] > out[high]:
            raise ValidationError("thresholds.%s must be %s thresholds.%s" % (low, rule, high))
    return out


def default_name(params):
    parts = []
    source = params.get("source")
    if source:
        where = source.get("path") or "%s%s" % (source.get("host") or "local",
                                                ":%s" % source["port"] if source.get("port") else "")
        parts.append("%s:%s%s" % (source.get("engine"), where,
                                  "/%s" % source["database"] if source.get("database") else ""))
    storage = params.get("storage")
    if storage:
        kind = storage.get("type") or "local"
        where = storage.get("bucket") if kind == "s3" else "%s%s" % (
            "%s:" % storage["host"] if storage.get("host") else "", storage.get("path") or "")
        parts.append("%s:%s%s" % (kind, where, "/%s" % storage["prefix"] if storage.get("prefix") else ""))
    return " + ".join(parts)


def run_healthcheck(params, check_mode, scrub):
    if not params.get("source") and not params.get("storage"):
        raise ValidationError("give source, storage or both")
    thresholds = parse_thresholds(params.get("thresholds"))
    name = params.get("name") or default_name(params)
    result = dict(changed=False, name=name, source=None, storage=None, check_mode=bool(check_mode))
    if params.get("source"):
        result["source"] = check_source(params["source"], thresholds, spool_dir=params.get("spool_dir"),
                                        storage_params=params.get("storage"), scrub=scrub)
    if params.get("storage"):
        result["storage"] = check_storage(params["storage"], thresholds, check_mode, scrub=scrub)
    parts = [part for part in (result["source"], result["storage"]) if part]
    status = worst(*[part["status"] for part in parts])
    result["status"] = status
    failed = status == CRITICAL
    messages = []
    for label in ("source", "storage"):
        part = result[label]
        if part and part["status"] != "healthy":
            messages.append("%s %s: %s" % (label, part["status"], part["msg"]))
    result["msg"] = "; ".join(messages) if messages else "healthy"
    state = track(params.get("state_dir"), name, failed, status, result["msg"] if failed else None,
                  params.get("alert_after") or 1, check_mode)
    result.update(state)
    result["changed"] = state["state_changed"]
    return result
