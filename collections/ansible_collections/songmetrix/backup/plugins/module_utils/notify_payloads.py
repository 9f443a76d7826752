"""What the notify module sends: the event, and its Slack, Discord, Teams and JSON forms.

Pure functions over an already redacted event dict; nothing here does I/O.
"""

import datetime

from ansible_collections.songmetrix.backup.plugins.module_utils.redact import tail_chars, tail_utf8

# The events, in the order the notify module documents them. ``skipped``: a scheduled run found another
# run of the job holding its lock and did nothing (roles/backup_schedule's wrapper).
EVENT_STATUS = {"start": "running", "success": "ok", "failure": "failed", "skipped": "skipped"}
# healthchecks.io ping body limit: 10 kB (the excess is dropped by the service from the end; we keep the tail).
PING_BODY_LIMIT = 10000
EVENT_VERSION = 1

# Fields of details that the event (and the log line) lift to the top level, in this order.
_TOP_FIELDS = ("engine", "database", "storage", "duration_seconds", "raw_size", "stored_size", "manifest_key",
               "sha256", "kind")
# Chat messages are short: the message's tail (errors end with the cause).
_CHAT_MESSAGE_CHARS = 1500

_TITLES = {
    "start": "Backup started",
    "success": "Backup succeeded",
    "failure": "Backup FAILED",
    "skipped": "Backup SKIPPED",
}


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso_utc(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _storage_text(storage):
    """A storage location as one short line (a dict from a job result, or a string)."""
    if isinstance(storage, dict):
        kind = storage.get("type") or ("local" if storage.get("path") else None)
        where = storage.get("bucket") or storage.get("host") or storage.get("path") or ""
        prefix = storage.get("prefix")
        text = "%s:%s" % (kind, where) if kind else str(where)
        return "%s/%s" % (text, prefix) if prefix else text
    return storage


def build_event(job, event, host, message, details, when):
    """The event dict (the generic JSON webhook's body); ``message`` and ``details`` already redacted."""
    details = dict(details or {})
    out = {
        "version": EVENT_VERSION,
        "source": "songmetrix.backup",
        "time": iso_utc(when),
        "host": host,
        "job": job,
        "event": event,
        "status": EVENT_STATUS[event],
        "message": message or None,
    }
    for name in _TOP_FIELDS:
        value = details.get(name)
        if name == "storage":
            value = _storage_text(value)
        out[name] = value
    if out["duration_seconds"] is None:
        out["duration_seconds"] = _duration(details)
    out["details"] = details
    return out


def _duration(details):
    try:
        started = datetime.datetime.fromisoformat(str(details["started"]).replace("Z", "+00:00"))
        finished = datetime.datetime.fromisoformat(str(details["finished"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        return None
    return round((finished - started).total_seconds(), 3)


def log_line(event):
    """The event log's record: one flat JSON object (no nested details)."""
    line = dict((k, v) for k, v in event.items() if k not in ("details", "version", "source"))
    if line.get("message"):
        line["message"] = tail_chars(line["message"], 4000)
    return line


def human_size(value):
    try:
        size = float(value)
    except (TypeError, ValueError):
        return None
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return ("%d %s" % (size, unit)) if unit == "B" else ("%.1f %s" % (size, unit))
        size /= 1024.0
    return None  # pragma: no cover


def human_duration(seconds):
    try:
        total = float(seconds)
    except (TypeError, ValueError):
        return None
    if total < 60:
        return "%.1f s" % total
    minutes, secs = divmod(int(round(total)), 60)
    hours, minutes = divmod(minutes, 60)
    return ("%dh %02dm %02ds" % (hours, minutes, secs)) if hours else ("%dm %02ds" % (minutes, secs))


def facts(event):
    """(label, value) pairs shown by the chat payloads, only those that have a value."""
    raw, stored = human_size(event.get("raw_size")), human_size(event.get("stored_size"))
    sizes = " → ".join(p for p in ("%s raw" % raw if raw else None, "%s stored" % stored if stored else None) if p)
    pairs = [
        ("Job", event["job"]),
        ("Host", event["host"]),
        ("Status", event["status"]),
        ("Engine", event.get("engine")),
        ("Database", event.get("database")),
        ("Duration", human_duration(event.get("duration_seconds"))),
        ("Size", sizes),
        ("Storage", event.get("storage")),
        ("Manifest", event.get("manifest_key")),
        ("SHA-256", (event.get("sha256") or "")[:16] or None),
        ("Time", event["time"]),
    ]
    return [(label, str(value)) for label, value in pairs if value not in (None, "")]


def title(event):
    return "%s: %s on %s" % (_TITLES[event["event"]], event["job"], event["host"])


def summary(event):
    """One plain line: the chat fallback text and the ping body of a success."""
    text = title(event)
    extra = [v for k, v in facts(event) if k in ("Duration", "Size", "Manifest")]
    if extra:
        text += " (" + ", ".join(extra) + ")"
    return text


# --- Slack: incoming webhook, Block Kit with a plain text fallback -----------------------------------------

def _slack_escape(text):
    # Slack's mrkdwn control characters; also keeps <!channel> and user mentions out of a message.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SLACK_EMOJI = {"start": ":arrow_forward:", "success": ":white_check_mark:", "failure": ":x:", "skipped": ":warning:"}


def slack_payload(event):
    header = "%s %s" % (_SLACK_EMOJI[event["event"]], title(event))
    fields = [{"type": "mrkdwn", "text": "*%s*\n%s" % (label, _slack_escape(value[:1900]))}
              for label, value in facts(event) if label not in ("Job", "Host", "Time")][:10]
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": header[:150], "emoji": True}}]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if event.get("message"):
        message = tail_chars(event["message"], _CHAT_MESSAGE_CHARS).replace("```", "'''")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "```%s```" % _slack_escape(message)}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": _slack_escape("songmetrix.backup · %s · %s" % (event["host"], event["time"]))}]})
    return {"text": _slack_escape(summary(event)), "blocks": blocks}


# --- Discord: webhook with content and one embed ----------------------------------------------------------

_DISCORD_COLOUR = {"start": 0x1E88E5, "success": 0x2E7D32, "failure": 0xC62828, "skipped": 0xF9A825}


def discord_payload(event):
    embed = {
        "title": title(event)[:256],
        "color": _DISCORD_COLOUR[event["event"]],
        "fields": [{"name": label, "value": value[:1024], "inline": label not in ("Manifest", "Storage")}
                   for label, value in facts(event) if label not in ("Job", "Host", "Time")][:25],
        "timestamp": event["time"],
        "footer": {"text": "songmetrix.backup"},
    }
    if event.get("message"):
        message = tail_chars(event["message"], _CHAT_MESSAGE_CHARS).replace("```", "'''")
        embed["description"] = "```\n%s\n```" % message
    return {
        "content": summary(event)[:2000],
        "embeds": [embed],
        # A message that happens to contain @everyone or a role mention must not ping anybody.
        "allowed_mentions": {"parse": []},
    }


# --- Microsoft Teams: Workflows webhook ("When a Teams webhook request is received"), Adaptive Card -------

_TEAMS_COLOUR = {"start": "Accent", "success": "Good", "failure": "Attention", "skipped": "Warning"}


def teams_payload(event):
    body = [
        {"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": True,
         "color": _TEAMS_COLOUR[event["event"]], "text": title(event)},
        {"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in facts(event)]},
    ]
    if event.get("message"):
        body.append({"type": "TextBlock", "wrap": True, "fontType": "Monospace",
                     "text": tail_chars(event["message"], _CHAT_MESSAGE_CHARS)})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "msteams": {"width": "Full"},
    }
    return {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                         "content": card}],
    }


def json_payload(event):
    return event


PAYLOADS = {
    "slack": slack_payload,
    "discord": discord_payload,
    "teams": teams_payload,
    "json": json_payload,
}

# healthchecks.io: /log records a skipped run in the check's events without changing its state (the
# missing success ping lets the check go down on its own schedule).
PING_SUFFIX = {"start": "/start", "success": "", "failure": "/fail", "skipped": "/log"}


def ping_body(event, log_text=None):
    """The healthchecks ping body (bytes): empty for start, a summary for success, and for a failure
    the log excerpt (or the message) of at most PING_BODY_LIMIT bytes, keeping its tail; a skipped run's
    body is its title and message."""
    if event["event"] == "start":
        return b""
    if event["event"] == "success":
        return tail_utf8(summary(event), PING_BODY_LIMIT)
    parts = [title(event)]
    if event["event"] == "skipped":
        return tail_utf8("\n".join(parts + [event.get("message") or ""]).rstrip("\n") + "\n", PING_BODY_LIMIT)
    parts.extend("%s: %s" % (label, value) for label, value in facts(event) if label not in ("Job", "Host"))
    if event.get("message"):
        parts.extend(["", event["message"].rstrip("\n")])
    if log_text:
        parts.extend(["", "--- log ---", log_text.rstrip("\n")])
    return tail_utf8("\n".join(parts) + "\n", PING_BODY_LIMIT)
