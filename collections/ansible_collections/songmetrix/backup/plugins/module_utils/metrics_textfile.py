"""Prometheus textfile metrics of one backup job, for node_exporter's textfile collector.

One file per job, ``<textfile_dir>/songmetrix_backup_<job>.prom``, replaced atomically (temp
file in the same directory, fsync, rename, fsync of the directory) and only when its content
changes. The text exposition format is written by hand: targets have no prometheus_client.
"""

import datetime
import math
import os
import re
import time

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.local_files import write_atomically
from ansible_collections.songmetrix.backup.plugins.module_utils.validation import job_name

PREFIX = "songmetrix_backup_"
FILE_MODE = 0o644
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
VERIFY_VALUES = {"ok": 1, "failed": 0, "skipped": -1}

# (name without prefix, help); every metric is a gauge.
METRICS = (
    ("last_success_timestamp_seconds",
     "Unix time at which the job's last successful backup finished (0: no success recorded yet)."),
    ("last_attempt_timestamp_seconds", "Unix time at which the job's last backup attempt finished."),
    ("last_status", "Result of the job's last attempt: 1 success, 0 failure."),
    ("duration_seconds", "Duration of the job's last attempt in seconds."),
    ("raw_bytes", "Size of the last successful backup before compression and encryption, in bytes."),
    ("stored_bytes", "Size of the last successful backup as stored, in bytes."),
    ("verify_status", "Result of the last verification: 1 ok, 0 failed, -1 skipped."),
    ("backups_kept", "Number of backups of the job kept in storage after the last prune."),
)
# Values that describe the last successful backup: a failed run that does not give them keeps the old ones.
_CARRIED_ON_FAILURE = ("last_success_timestamp_seconds", "raw_bytes", "stored_bytes", "backups_kept")


def escape_label_value(value):
    return str(value).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def escape_help(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value):
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise ValidationError("metric value %r is not a finite number" % (value,))
    if number.is_integer() and abs(number) < 2 ** 53:
        return "%d" % number
    return repr(round(number, 6))


def _epoch(label, value):
    """Unix seconds from a number, a numeric string or an ISO 8601 time ('...Z' or with an offset)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise ValidationError("%s %r is not a Unix time or an ISO 8601 time such as 2026-11-23T02:00:00Z"
                              % (label, value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def check_labels(labels):
    out = []
    for name in sorted((labels or {}).keys()):
        value = labels[name]
        if not LABEL_NAME_RE.match(str(name)) or str(name).startswith("__"):
            raise ValidationError("label name %r is not valid: use letters, digits and '_', not starting with a "
                                  "digit or '__'" % (name,))
        if name == "job":
            raise ValidationError("label 'job' is set from the job option; give the other labels only")
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.append((str(name), str(value)))
    return out


def read_previous(path):
    """{metric name without prefix: float} from an existing file of ours ({} when absent or unreadable)."""
    values = {}
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return values, None
    for line in lines:
        if not line.startswith(PREFIX):
            continue
        name = re.split(r"[{\s]", line, maxsplit=1)[0][len(PREFIX):]
        try:
            values.setdefault(name, float(line.rsplit(None, 1)[-1]))
        except (ValueError, IndexError):
            continue
    return values, "\n".join(lines) + ("\n" if lines else "")


def compute(params, previous, now=None):
    """The metric values of this run: {name: number or None}."""
    success = params["status"] == "success"
    started = _epoch("started", params.get("started"))
    finished = _epoch("finished", params.get("finished"))
    duration = params.get("duration_seconds")
    if duration is None and started is not None and finished is not None:
        duration = max(0.0, finished - started)
    if finished is None:
        finished = (started + duration) if (started is not None and duration is not None) else (
            now if now is not None else time.time())
    values = {
        "last_attempt_timestamp_seconds": finished,
        "last_status": 1 if success else 0,
        "duration_seconds": duration,
        "raw_bytes": params.get("raw_bytes"),
        "stored_bytes": params.get("stored_bytes"),
        "verify_status": VERIFY_VALUES.get(params.get("verify_status")) if params.get("verify_status") else None,
        "backups_kept": params.get("backups_kept"),
        "last_success_timestamp_seconds": finished if success else None,
    }
    if not success:
        for name in _CARRIED_ON_FAILURE:
            if values[name] is None:
                values[name] = previous.get(name)
        if values["last_success_timestamp_seconds"] is None:
            values["last_success_timestamp_seconds"] = 0
    return values


def render(job, labels, values):
    label_text = ",".join('%s="%s"' % (name, escape_label_value(value)) for name, value in [("job", job)] + labels)
    lines = []
    for name, help_text in METRICS:
        if values.get(name) is None:
            continue
        full = PREFIX + name
        lines.append("# HELP %s %s" % (full, escape_help(help_text)))
        lines.append("# TYPE %s gauge" % full)
        lines.append("%s{%s} %s" % (full, label_text, format_value(values[name])))
    return "\n".join(lines) + "\n"


def run_metrics(params, check_mode=False, diff=False):
    job = job_name(params["job"])
    directory = params["textfile_dir"]
    if not os.path.isdir(directory):
        raise ValidationError("textfile_dir %s is not a directory (node_exporter's --collector.textfile.directory)"
                              % directory)
    labels = check_labels(params.get("labels"))
    for name in ("duration_seconds", "raw_bytes", "stored_bytes", "backups_kept"):
        if params.get(name) is not None and params[name] < 0:
            raise ValidationError("%s must not be negative" % name)

    path = os.path.join(directory, PREFIX + job + ".prom")
    previous, old_content = read_previous(path)
    values = compute(params, previous)
    content = render(job, labels, values)
    changed = content != old_content

    result = {
        "changed": changed,
        "path": path,
        "metrics": dict((PREFIX + name, values[name]) for name, _help in METRICS if values.get(name) is not None),
    }
    if diff:
        result["diff"] = {"before": old_content or "", "after": content,
                          "before_header": path if old_content is not None else "%s (absent)" % path,
                          "after_header": path}
    if changed and not check_mode:
        try:
            write_atomically(path, content.encode("utf-8"), FILE_MODE)
        except OSError as exc:
            raise BackupError("could not write %s: %s" % (path, exc.strerror or exc))
    return result
