"""The notify module's run: redact, append the event log line, ping healthchecks, call webhooks."""

import json
import os
import socket

from ansible_collections.songmetrix.backup.plugins.module_utils import notify_payloads as payloads
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.host_dirs import make_dirs
from ansible_collections.songmetrix.backup.plugins.module_utils.notify_webhooks import post
from ansible_collections.songmetrix.backup.plugins.module_utils.redact import (
    redact_data,
    redact_text,
    redact_url,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.validation import job_name

WEBHOOK_TYPES = ("slack", "discord", "teams", "json")
EVENTS = tuple(payloads.EVENT_STATUS)
DEFAULT_ON = ["failure"]
DEFAULT_TIMEOUT = 10
LOG_FILE_MODE = 0o640
# How much of a log_path file is read: its end, more than the ping body keeps (redaction may shorten it).
_LOG_READ_BYTES = 64 * 1024


def _check_url(label, url):
    text = str(url or "")
    if not (text.startswith("http://") or text.startswith("https://")) or len(text) < 10 or any(
            ch.isspace() for ch in text):
        raise ValidationError("%s must be an http:// or https:// URL (given: %s)" % (label, redact_url(text)))
    return text


def _read_log_tail(path, secrets):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _LOG_READ_BYTES))
            data = handle.read()
    except OSError as exc:
        return None, "log_path %s could not be read: %s" % (path, exc.strerror or exc)
    text = data.decode("utf-8", errors="replace")
    if size > _LOG_READ_BYTES and "\n" in text:
        text = text[text.index("\n") + 1:]  # the first line is partial (and could hold half a secret)
    return redact_text(text, secrets), None


def append_event_log(path, line):
    """Append one JSON line with O_APPEND in a single write; the file is created 0640."""
    data = (json.dumps(line, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        make_dirs(parent, 0o750)  # every missing level 0750, not only the last
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), LOG_FILE_MODE)
    try:
        written = os.write(fd, data)
        while written < len(data):  # a short write on a regular file: only on a full disk or a signal
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)


def _targets(params, event):
    """(kind, type, url, timeout, headers, body, content_type) for everything this event goes to."""
    out = []
    for index, hook in enumerate(params.get("webhooks") or []):
        url = _check_url("webhooks[%d].url" % index, hook.get("url"))
        kind = hook.get("type")
        on = hook.get("events") or DEFAULT_ON
        unknown = [e for e in on if e not in EVENTS]
        if unknown:
            raise ValidationError("webhooks[%d].events: unknown events %s" % (index, unknown))
        if event["event"] not in on:
            continue
        body = json.dumps(payloads.PAYLOADS[kind](event), ensure_ascii=False, sort_keys=False).encode("utf-8")
        out.append(dict(kind="webhook", type=kind, url=url, timeout=hook.get("timeout") or DEFAULT_TIMEOUT,
                        headers=hook.get("headers") or {}, body=body,
                        content_type="application/json"))
    return out


def run_notify(params, check_mode=False, secrets=()):
    secrets = [s for s in secrets if s]
    job = job_name(params["job"])
    event_name = params["event"]
    host = params.get("host") or socket.gethostname()
    message = redact_text(params.get("summary"), secrets)
    details = redact_data(params.get("details") or {}, secrets)
    warnings = []

    event = payloads.build_event(job, event_name, redact_text(host, secrets), message, details, payloads.utc_now())
    targets = _targets(params, event)

    checks = params.get("healthchecks")
    if checks and checks.get("url"):
        base = _check_url("healthchecks.url", checks["url"]).rstrip("/")
        log_text = params.get("log")
        if log_text:
            log_text = redact_text(log_text, secrets)
        elif params.get("log_path") and event_name == "failure":
            log_text, problem = _read_log_tail(params["log_path"], secrets)
            if problem:
                warnings.append(problem)
        targets.append(dict(kind="ping", type="healthchecks", url=base + payloads.PING_SUFFIX[event_name],
                            timeout=checks.get("timeout") or DEFAULT_TIMEOUT, headers={},
                            body=payloads.ping_body(event, log_text), content_type="text/plain; charset=utf-8",
                            base=base, suffix=payloads.PING_SUFFIX[event_name]))

    log_path = params.get("event_log")
    line = payloads.log_line(event)
    result = {"changed": False, "event": event, "sent": [], "logged": False, "warnings": warnings}

    if check_mode:
        result["would_send"] = [_describe(t, include_body=True) for t in targets]
        result["would_log"] = line if log_path else None
        result["changed"] = bool(targets or log_path)
        return result

    failures = []
    if log_path:
        try:
            append_event_log(log_path, line)
            result["logged"] = True
            result["changed"] = True
        except OSError as exc:
            failures.append("event_log %s: %s" % (log_path, exc.strerror or exc))

    for target in targets:
        outcome = post(target["url"], target["body"], target["content_type"], target["timeout"],
                       headers=target["headers"], secrets=secrets)
        entry = _describe(target)
        entry.update(status_code=outcome["status_code"], attempts=outcome["attempts"])
        if outcome.get("retried_because"):
            entry["retried_because"] = redact_text(outcome["retried_because"], secrets)
        if outcome["error"]:
            entry["error"] = redact_text(outcome["error"], secrets)
            failures.append("%s %s: %s" % (target["type"], entry["target"], entry["error"]))
        else:
            result["changed"] = True
        result["sent"].append(entry)

    if failures:
        if params.get("fail_on_error"):
            raise BackupError("notification failed: " + "; ".join(failures), sent=result["sent"],
                              logged=result["logged"], event=event)
        warnings.extend("notification not delivered (%s); the job's result is unchanged" % f for f in failures)
    return result


def _describe(target, include_body=False):
    if target["kind"] == "ping":
        # The ping's kind stays visible: scheme://host/…/start, …/fail, or the bare URL for a success.
        entry = {"type": target["type"], "target": redact_url(target["base"]) + target["suffix"]}
    else:
        entry = {"type": target["type"], "target": redact_url(target["url"])}
    if include_body:
        body = target["body"].decode("utf-8")
        entry["payload"] = json.loads(body) if target["content_type"] == "application/json" else body
    return entry
