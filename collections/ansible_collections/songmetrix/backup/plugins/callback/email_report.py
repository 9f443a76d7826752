# Copyright: songmetrix.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: email_report
type: aggregate
short_description: One email per run with the outcome of every backup job
version_added: 0.5.0
author:
  - songmetrix engineering (@songmetrix)
description:
  - Collects the results of this collection's modules (C(songmetrix.backup.*)) and the job records of
    the C(backup_run) role (the fact C(backup_run_results)) across all hosts of a run, and sends one
    email when the playbook ends.
  - "The subject carries the overall status and counts, for example C([backup] FAILED 1/12 jobs - prod).
    The status is FAILED when any job failed, else SKIPPED when a scheduled run was skipped because
    another run of its job held the lock, else CHANGED when any job changed something (a new backup
    was stored), else OK."
  - The mail has a text/plain and a text/html part (inline styles, no external assets) with a table
    per host, one row per host and job, failures first, columns status, job, engine, database, size,
    ratio, duration, storage key, sha256 prefix and error.
  - An unreachable host is a failed row. A host that failed outside this collection's tasks (an
    assertion, a missing variable) without any failed job gets a failed row for the run.
  - "Source of truth: for a host where the C(backup_run) role recorded jobs (C(backup_run_results)), each
    recorded job is one row with the role's data and message; results of this collection's modules
    fill in details and add jobs the role did not record. Results of C(no_log) tasks are censored by
    Ansible and show no details."
  - A run in which no task of this collection and no task of the C(backup_run) role ran sends no mail.
  - "Secrets never reach the mail: values of secret task arguments (the modules' C(no_log) options such as
    C(connection_string) and a webhook's C(url), every header value, and any argument named like a password,
    secret, token, key or passphrase) are masked wherever they appear, and so are credentials in URIs
    (C(scheme://user:********@host)), C(password=...) pairs, the secret fields of connection strings
    (C(AccountKey=), C(Pwd=), a SAS token's C(sig=)) and C(X-...) header values."
  - "The login is sent over TLS only: with O(user) set and neither O(ssl) nor O(starttls), no mail is sent and
    a warning says what to set, unless O(allow_plaintext_login) is true. The server's certificate and name are
    always verified (against O(ca_file) when set)."
  - A mail server that is down, refuses the login or times out produces a warning; it never fails the run.
    Invalid options produce a warning and no mail.
requirements:
  - Enable it in C(ansible.cfg) (C(callbacks_enabled = songmetrix.backup.email_report)) or with the
    environment variable C(ANSIBLE_CALLBACKS_ENABLED).
options:
  smtp_host:
    description: The mail server.
    type: str
    default: localhost
    ini:
      - section: callback_email_report
        key: smtp_host
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_SMTP_HOST
  smtp_port:
    description: The mail server's port; 465 when O(ssl) is true, else 25.
    type: int
    ini:
      - section: callback_email_report
        key: smtp_port
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_SMTP_PORT
  ssl:
    description: Connect with TLS from the start (SMTPS, usually port 465). The certificate is verified.
    type: bool
    default: false
    ini:
      - section: callback_email_report
        key: ssl
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_SSL
  starttls:
    description: Upgrade the connection with STARTTLS before logging in (usually port 587).
    type: bool
    default: false
    ini:
      - section: callback_email_report
        key: starttls
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_STARTTLS
  ca_file:
    description:
      - A PEM file of the certificate authorities that sign the mail server's certificate (a private CA).
      - The system's trust store when unset. Verification cannot be turned off.
    type: path
    version_added: 0.6.0
    ini:
      - section: callback_email_report
        key: ca_file
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_CA_FILE
  allow_plaintext_login:
    description:
      - Log in (send O(user) and O(password)) over a connection without TLS.
      - When false, a login without O(ssl) or O(starttls) is refused before anything is sent, with a warning
        that says what to set, and no mail goes out. Only for a relay on the same host or a network you trust
        with the password.
    type: bool
    default: false
    version_added: 0.6.0
    ini:
      - section: callback_email_report
        key: allow_plaintext_login
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_ALLOW_PLAINTEXT_LOGIN
  user:
    description: The SMTP login; no login when unset.
    type: str
    ini:
      - section: callback_email_report
        key: user
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_USER
  password:
    description:
      - The SMTP password (keep it in the environment or a vaulted file, not in ansible.cfg).
      - Sent over TLS only (O(ssl) or O(starttls)), unless O(allow_plaintext_login) is true.
    type: str
    ini:
      - section: callback_email_report
        key: password
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_PASSWORD
  sender:
    description: The From address; C(ansible@<this host's name>) when unset.
    type: str
    ini:
      - section: callback_email_report
        key: from
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_FROM
  to:
    description: Recipients (a comma-separated string in ini and env). No recipient, no mail (a warning).
    type: list
    elements: str
    default: []
    ini:
      - section: callback_email_report
        key: to
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_TO
  cc:
    description: Carbon-copy recipients (a comma-separated string in ini and env).
    type: list
    elements: str
    default: []
    ini:
      - section: callback_email_report
        key: cc
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_CC
  send_on:
    description:
      - When to send.
      - V(always) after every run with backup jobs; V(failure) only when a job failed (or a host was
        unreachable); V(change) when a job failed or changed something.
    type: str
    default: always
    choices: [always, failure, change]
    ini:
      - section: callback_email_report
        key: send_on
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_SEND_ON
  subject_prefix:
    description: Put at the start of the subject.
    type: str
    default: "[backup]"
    ini:
      - section: callback_email_report
        key: subject_prefix
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_SUBJECT_PREFIX
  environment:
    description: A label for the environment (prod, staging), put at the end of the subject and in the body.
    type: str
    default: ""
    ini:
      - section: callback_email_report
        key: environment
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_ENVIRONMENT
  timeout:
    description: Seconds to wait for the mail server (connect and each command).
    type: int
    default: 30
    ini:
      - section: callback_email_report
        key: timeout
    env:
      - name: SONGMETRIX_BACKUP_EMAIL_TIMEOUT
"""

EXAMPLES = r"""
# ansible.cfg: the submission port with STARTTLS
# [defaults]
# callbacks_enabled = songmetrix.backup.email_report
#
# [callback_email_report]
# smtp_host = mail.example.com
# smtp_port = 587
# starttls = true
# user = backup-reports
# from = backup@example.com
# to = ops@example.com, dba@example.com
# send_on = always
# environment = prod
#
# The password from the environment: SONGMETRIX_BACKUP_EMAIL_PASSWORD=...

# SMTPS (TLS from the start) to a server whose certificate a private CA signed
# [callback_email_report]
# smtp_host = smtp.internal.example
# smtp_port = 465
# ssl = true
# ca_file = /etc/ssl/certs/internal-ca.pem
# user = backup-reports
# to = ops@example.com
"""

import datetime
import html
import os
import smtplib
import socket
import ssl as ssl_lib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from ansible.errors import AnsibleError
from ansible.plugins.callback import CallbackBase

from ansible_collections.songmetrix.backup.plugins.module_utils.layout import job_of_manifest_key
from ansible_collections.songmetrix.backup.plugins.plugin_utils.redact import (
    collect_secrets,
    redact_text,
)

COLLECTION_PREFIX = "songmetrix.backup."
ROLE_RESULTS_FACT = "backup_run_results"
ROLE_NAME = "backup_run"
# Modules whose successful results are not jobs (listings); only their failures are reported.
INFO_MODULES = frozenset({"backup_info"})
CENSORED_MSG = "details hidden (no_log)"

STATUS_FAILED = "failed"
STATUS_CHANGED = "changed"
STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"  # a scheduled run that found its job locked by another run: nothing backed up
_RANK = {STATUS_OK: 0, STATUS_CHANGED: 1, STATUS_SKIPPED: 2, STATUS_FAILED: 3}

COLUMNS = (
    ("status", "Status"),
    ("job", "Job"),
    ("engine", "Engine"),
    ("database", "Database"),
    ("size", "Size"),
    ("ratio", "Ratio"),
    ("duration", "Duration"),
    ("key", "Storage key"),
    ("sha256", "SHA-256"),
    ("error", "Error"),
)


# ---------------------------------------------------------------- rows and formatting

def worst(a, b):
    return a if _RANK.get(a, 0) >= _RANK.get(b, 0) else b


def new_row(host, job):
    return {
        "host": host, "job": job, "status": STATUS_OK, "engine": None, "database": None,
        "raw_size": None, "stored_size": None, "duration": None, "manifest_key": None,
        "sha256": None, "errors": [], "check_mode": False,
    }


def _fill(row, field, value):
    if row.get(field) in (None, "") and value not in (None, ""):
        row[field] = value


def _number(value):
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def human_size(value):
    value = _number(value)
    if value is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024.0
    return ""


def ratio(raw, stored):
    raw, stored = _number(raw), _number(stored)
    if not raw or not stored:
        return ""
    return "%.1fx" % (raw / stored)


def human_duration(value):
    value = _number(value)
    if value is None:
        return ""
    if value < 60:
        return "%.1f s" % value
    seconds = int(round(value))
    if seconds < 3600:
        return "%dm %02ds" % (seconds // 60, seconds % 60)
    return "%dh %02dm" % (seconds // 3600, (seconds % 3600) // 60)


def sort_rows(rows):
    """Failures first, then changed, then ok; by host and job within each status."""
    return sorted(rows, key=lambda r: (-_RANK.get(r["status"], 0), str(r["host"]), str(r["job"])))


def group_by_host(rows):
    """[(host, rows)]: hosts with a failure first, then the others; each host's rows failures first."""
    hosts = {}
    for row in rows:
        hosts.setdefault(row["host"], []).append(row)
    ordered = sorted(hosts.items(), key=lambda item: (
        -max(_RANK.get(r["status"], 0) for r in item[1]), str(item[0])))
    return [(host, sort_rows(host_rows)) for host, host_rows in ordered]


def cells(row, secrets=()):
    """The displayed, redacted text of each column of a row."""
    status = row["status"].upper() if row["status"] == STATUS_FAILED else row["status"]
    if row.get("check_mode") and row["status"] != STATUS_FAILED:
        status += " (check)"
    errors = []
    for error in row.get("errors") or []:
        if error and error not in errors:
            errors.append(error)
    return {
        "status": status,
        "job": redact_text(row.get("job") or "", secrets),
        "engine": redact_text(row.get("engine") or "", secrets),
        "database": redact_text(row.get("database") or "", secrets),
        "size": human_size(row.get("stored_size")),
        "ratio": ratio(row.get("raw_size"), row.get("stored_size")),
        "duration": human_duration(row.get("duration")),
        "key": redact_text(row.get("manifest_key") or "", secrets),
        "sha256": str(row.get("sha256") or "")[:12],
        "error": redact_text("; ".join(errors), secrets),
    }


def counts(rows):
    result = {STATUS_FAILED: 0, STATUS_SKIPPED: 0, STATUS_CHANGED: 0, STATUS_OK: 0}
    for row in rows:
        result[row["status"]] = result.get(row["status"], 0) + 1
    result["total"] = len(rows)
    return result


def overall_status(rows):
    status = STATUS_OK
    for row in rows:
        status = worst(status, row["status"])
    return status


def subject(rows, prefix="[backup]", environment=""):
    status = overall_status(rows)
    number = counts(rows)
    shown = number[status] if status != STATUS_OK else number[STATUS_OK]
    text = "%s %s %d/%d jobs" % (prefix, status.upper(), shown, number["total"])
    if environment:
        text += " - %s" % environment
    return " ".join(text.split()).strip()


def summary_line(rows):
    number = counts(rows)
    hosts = len({row["host"] for row in rows})
    skipped = ", %d skipped" % number[STATUS_SKIPPED] if number[STATUS_SKIPPED] else ""
    return "%d job(s) on %d host(s): %d failed%s, %d changed, %d ok" % (
        number["total"], hosts, number[STATUS_FAILED], skipped, number[STATUS_CHANGED], number[STATUS_OK])


def render_text(rows, secrets=(), environment="", when=None):
    lines = [summary_line(rows)]
    if environment:
        lines.append("Environment: %s" % environment)
    if when:
        lines.append("Finished: %s" % when)
    for host, host_rows in group_by_host(rows):
        table = [cells(row, secrets) for row in host_rows]
        keys = [key for key, _title in COLUMNS if key != "error"]
        widths = {key: max([len(title) for k, title in COLUMNS if k == key] + [len(c[key]) for c in table])
                  for key in keys}
        lines.append("")
        lines.append("Host: %s" % redact_text(host, secrets))
        lines.append("  ".join(title.ljust(widths[key]) for key, title in COLUMNS if key != "error").rstrip())
        lines.append("  ".join("-" * widths[key] for key in keys))
        for cell in table:
            lines.append("  ".join(cell[key].ljust(widths[key]) for key in keys).rstrip())
            if cell["error"]:
                lines.append("    error: %s" % cell["error"])
    lines.append("")
    lines.append("-- songmetrix.backup.email_report")
    return "\n".join(lines) + "\n"


_STYLE_TABLE = "border-collapse:collapse;font-family:Arial,Helvetica,sans-serif;font-size:13px;margin-bottom:18px"
_STYLE_TH = "text-align:left;background:#37474f;color:#ffffff;padding:4px 8px;border:1px solid #cfd8dc"
_STYLE_TD = "padding:4px 8px;border:1px solid #cfd8dc;vertical-align:top"
_ROW_BG = {STATUS_FAILED: "#ffebee", STATUS_SKIPPED: "#fff8e1", STATUS_CHANGED: "#ffffff", STATUS_OK: "#ffffff"}
_STATUS_COLOR = {STATUS_FAILED: "#c62828", STATUS_SKIPPED: "#ef6c00", STATUS_CHANGED: "#2e7d32",
                 STATUS_OK: "#2e7d32"}


def render_html(rows, secrets=(), environment="", when=None, title=""):
    esc = html.escape
    status = overall_status(rows)
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>%s</title></head>' % esc(title),
        '<body style="font-family:Arial,Helvetica,sans-serif;color:#212121">',
        '<h2 style="margin:0 0 6px 0;color:%s">%s</h2>' % (_STATUS_COLOR[status], esc(title)),
        '<p style="margin:0 0 12px 0">%s%s%s</p>' % (
            esc(summary_line(rows)),
            ("<br>Environment: %s" % esc(environment)) if environment else "",
            ("<br>Finished: %s" % esc(when)) if when else ""),
    ]
    for host, host_rows in group_by_host(rows):
        parts.append('<h3 style="margin:12px 0 4px 0">Host: %s</h3>' % esc(redact_text(host, secrets)))
        parts.append('<table style="%s">' % _STYLE_TABLE)
        parts.append("<tr>%s</tr>" % "".join('<th style="%s">%s</th>' % (_STYLE_TH, esc(t)) for _k, t in COLUMNS))
        for row in host_rows:
            cell = cells(row, secrets)
            tds = []
            for key, _title in COLUMNS:
                style = _STYLE_TD
                if key == "status":
                    style += ";font-weight:bold;color:%s" % _STATUS_COLOR.get(row["status"], "#212121")
                elif key in ("sha256", "key"):
                    style += ";font-family:monospace"
                elif key == "error":
                    style += ";color:#b71c1c"
                tds.append('<td style="%s">%s</td>' % (style, esc(cell[key])))
            parts.append('<tr style="background:%s">%s</tr>' % (_ROW_BG.get(row["status"], "#ffffff"), "".join(tds)))
        parts.append("</table>")
    parts.append('<p style="color:#757575;font-size:11px">songmetrix.backup.email_report</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- collecting

def _module_name(task, resolve=False):
    """The short module name when the task runs a module of this collection, else None.

    resolve: ask the task for its resolved action (short names under `collections:`); only safe
    in the runner callbacks (Ansible warns when it is sampled before the task ran).
    """
    candidates = [getattr(task, "_resolved_action", None), getattr(task, "action", None)]
    if resolve and candidates[0] is None and "{" not in str(candidates[1]):
        try:
            candidates.insert(0, task.resolved_action)
        except Exception:  # an unresolvable action is simply not ours
            pass
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.startswith(COLLECTION_PREFIX):
            return candidate[len(COLLECTION_PREFIX):]
    return None


def _in_role(task, name=ROLE_NAME):
    role = getattr(task, "_role", None)
    if role is None:
        return False
    try:
        role_name = role.get_name(include_role_fqcn=False)
    except TypeError:
        role_name = role.get_name()
    return role_name == name or str(role_name).endswith("." + name)


def _plain_args(result):
    """The task's arguments, templated (the task object a callback gets is the one that ran).

    Not result.task_fields (deprecated in 2.21) and not the result's `invocation` (gone in 2.21).
    """
    args = getattr(result.task, "args", None)
    if not isinstance(args, dict):
        return {}
    return {k: v for k, v in args.items() if not str(k).startswith("_ansible_")}


def _result_dict(result):
    data = getattr(result, "result", None)
    if data is None:
        data = getattr(result, "_result", None)
    return data if isinstance(data, dict) else {}


def step_from_result(module, args, data, status, task_name, item=None):
    """One step (a module result) as {job, status, data..., error} or None when not reported."""
    censored = "censored" in data
    manifest = data.get("manifest") if isinstance(data.get("manifest"), dict) else {}
    source = args.get("source") if isinstance(args.get("source"), dict) else {}
    source = {k: v for k, v in source.items() if not (isinstance(v, str) and "{{" in v)}
    job = manifest.get("job") or data.get("job")
    for candidate in (args.get("job"), args.get("name"), data.get("name")):
        # In a loop the task's arguments are not templated per item: "{{ item }}" is no job name.
        if not job and isinstance(candidate, str) and candidate and "{{" not in candidate:
            job = candidate
    key = args.get("manifest_key")
    if not job and isinstance(key, str) and "{{" not in key:
        job = job_of_manifest_key(key)  # a task given only a manifest_key (verify, restore)
    if not job:
        job = "%s: %s" % (module, task_name) + (" (%s)" % item if item not in (None, "") else "")
    if status != STATUS_FAILED and module in INFO_MODULES:
        return None
    step = {
        "module": module,
        "job": str(job),
        "status": status,
        "engine": manifest.get("engine") or data.get("engine") or source.get("engine"),
        "database": manifest.get("database") or source.get("database") or source.get("path"),
        "raw_size": manifest.get("raw_size"),
        "stored_size": manifest.get("stored_size"),
        "duration": manifest.get("duration_seconds", data.get("duration_seconds")),
        "manifest_key": data.get("manifest_key") or manifest.get("manifest_key"),
        "sha256": manifest.get("sha256") or (data.get("sha256") if module == "restore" else None),
        "check_mode": bool(args.get("_ansible_check_mode")),
        "error": None,
        "censored": censored,
    }
    if status == STATUS_FAILED:
        if censored:
            step["error"] = "%s: %s" % (module, CENSORED_MSG)
        else:
            step["error"] = "%s: %s" % (module, data.get("msg") or "failed without a message")
    return step


def build_rows(steps, role_rows, unreachable, failed_hosts, last_failure):
    """Merge module steps and role records into one row per host and job.

    steps: {host: [step]}, role_rows: {host: {job: record}}, unreachable: {host: msg},
    failed_hosts: hosts with failures Ansible did not rescue or ignore, last_failure: {host: text}.
    """
    rows = []
    hosts = set(steps) | set(role_rows) | set(unreachable) | set(failed_hosts)
    for host in sorted(hosts, key=str):
        by_job = {}
        for step in steps.get(host, []):
            row = by_job.setdefault(step["job"], new_row(host, step["job"]))
            row["status"] = worst(row["status"], step["status"])
            for field in ("engine", "database", "raw_size", "stored_size", "duration", "manifest_key", "sha256"):
                _fill(row, field, step.get(field))
            row["check_mode"] = row["check_mode"] or step.get("check_mode", False)
            if step.get("error"):
                row["errors"].append(step["error"])
        for job, record in (role_rows.get(host) or {}).items():
            row = by_job.setdefault(job, new_row(host, job))
            failed = bool(record.get("failed"))
            check_mode = bool(record.get("check_mode"))
            # The role's record decides the job's data: it saw the module's result even when no_log hid it.
            for field, key in (("engine", "engine"), ("database", "what"), ("raw_size", "raw_size"),
                               ("stored_size", "stored_size"), ("duration", "duration"),
                               ("manifest_key", "manifest_key"), ("sha256", "sha256")):
                if record.get(key) not in (None, ""):
                    row[field] = record.get(key)
            row["check_mode"] = row["check_mode"] or check_mode
            if failed:
                row["status"] = STATUS_FAILED
                message = record.get("msg") or "failed without a message"
                # The role's message replaces the placeholders of censored (no_log) steps and the same
                # message of the step that failed ("dump: <message>").
                row["errors"] = [message] + [e for e in row["errors"]
                                             if not e.endswith(CENSORED_MSG) and e.partition(": ")[2] != message]
            elif record.get("skipped"):
                row["status"] = worst(row["status"], STATUS_SKIPPED)
                row["errors"].append(record.get("msg") or "skipped: another run held the job's lock")
            elif not check_mode and (record.get("manifest_key") or record.get("stored_size") is not None):
                row["status"] = worst(row["status"], STATUS_CHANGED)
        if host in unreachable:
            row = new_row(host, "(host unreachable)")
            row["status"] = STATUS_FAILED
            row["errors"].append(unreachable[host] or "unreachable")
            by_job[row["job"]] = row
        if host in failed_hosts and not any(r["status"] == STATUS_FAILED for r in by_job.values()):
            row = new_row(host, "(run)")
            row["status"] = STATUS_FAILED
            row["errors"].append(last_failure.get(host) or "the play failed on this host")
            by_job[row["job"]] = row
        rows.extend(by_job.values())
    return sort_rows(rows)


class CallbackModule(CallbackBase):
    """Collect this collection's results; mail one report at the end of the playbook."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "songmetrix.backup.email_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self.disabled = False
        self._config_error = None
        self._steps = {}
        self._role_rows = {}
        self._unreachable = {}
        self._last_failure = {}
        self._secrets = set()
        self._relevant = False

    # -------------------------------------------------------------- options

    def set_options(self, task_keys=None, var_options=None, direct=None):
        try:
            super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        except (AnsibleError, ValueError, TypeError) as exc:
            # A typo in the mail settings must not stop the backups: warn once, send nothing.
            self._config_error = "invalid option: %s" % exc
            self._warn(self._config_error)

    def _settings(self):
        """The validated options as a dict, or (None, reason)."""
        if self._config_error:
            return None, self._config_error
        opts = {name: self.get_option(name) for name in (
            "smtp_host", "smtp_port", "ssl", "starttls", "ca_file", "allow_plaintext_login", "user", "password",
            "sender", "to", "cc", "send_on", "subject_prefix", "environment", "timeout")}
        opts["to"] = [a.strip() for a in (opts["to"] or []) if a and str(a).strip()]
        opts["cc"] = [a.strip() for a in (opts["cc"] or []) if a and str(a).strip()]
        if not opts["to"]:
            return None, "no recipient: set 'to' ([callback_email_report] to, or SONGMETRIX_BACKUP_EMAIL_TO)"
        if opts["send_on"] not in ("always", "failure", "change"):
            return None, "send_on must be always, failure or change, not %r" % opts["send_on"]
        if opts["ssl"] and opts["starttls"]:
            return None, "ssl and starttls exclude each other: ssl is TLS from the start, starttls upgrades"
        if not opts["smtp_host"]:
            return None, "smtp_host is empty"
        if opts["smtp_port"] is None:
            opts["smtp_port"] = 465 if opts["ssl"] else 25
        if not 0 < int(opts["smtp_port"]) < 65536:
            return None, "smtp_port must be between 1 and 65535, not %s" % opts["smtp_port"]
        if not opts["timeout"] or int(opts["timeout"]) <= 0:
            return None, "timeout must be a positive number of seconds"
        if opts["password"] and not opts["user"]:
            return None, "a password is set but no user"
        if opts["user"] and not (opts["ssl"] or opts["starttls"] or opts["allow_plaintext_login"]):
            return None, (
                "refusing to send the login of %s to %s:%s over a connection without TLS: set starttls = true "
                "(port 587) or ssl = true (port 465) in [callback_email_report] (SONGMETRIX_BACKUP_EMAIL_STARTTLS=true "
                "or SONGMETRIX_BACKUP_EMAIL_SSL=true), or allow_plaintext_login = true "
                "(SONGMETRIX_BACKUP_EMAIL_ALLOW_PLAINTEXT_LOGIN=true) for a relay you trust with the password"
                % (opts["user"], opts["smtp_host"], opts["smtp_port"]))
        if opts["ca_file"] and not os.path.isfile(opts["ca_file"]):
            return None, "ca_file %s is not a file" % opts["ca_file"]
        for address in [opts["sender"] or ""] + opts["to"] + opts["cc"]:
            if address and ("@" not in address or any(c in address for c in "\r\n")):
                return None, "not an email address: %r" % address
        if not opts["sender"]:
            opts["sender"] = "ansible@%s" % (socket.getfqdn() or "localhost")
        return opts, None

    def _warn(self, message):
        self._display.warning("songmetrix.backup.email_report: %s" % message)

    # -------------------------------------------------------------- collecting

    def v2_playbook_on_task_start(self, task, is_conditional):
        if _module_name(task) or _in_role(task):
            self._relevant = True

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def _remember_secrets(self, args):
        try:
            self._secrets.update(collect_secrets(args))
        except Exception:  # collecting secrets must never break the run
            pass

    def _record(self, result, status, ignore_errors=False, item=None):
        try:
            self._record_unsafe(result, status, ignore_errors, item)
        except Exception as exc:  # a report must never break the run
            self._display.vvv("songmetrix.backup.email_report: could not record a result: %s" % exc)

    def _record_unsafe(self, result, status, ignore_errors, item):
        host = result.host.get_name()
        args = _plain_args(result)
        self._remember_secrets(args)
        data = _result_dict(result)
        facts = data.get("ansible_facts")
        if isinstance(facts, dict) and isinstance(facts.get(ROLE_RESULTS_FACT), list):
            self._relevant = True
            records = self._role_rows.setdefault(host, {})
            for record in facts[ROLE_RESULTS_FACT]:
                if isinstance(record, dict) and record.get("job"):
                    records[str(record["job"])] = dict(record)
        module = _module_name(result.task, resolve=True)
        if module is None:
            if status == STATUS_FAILED and not ignore_errors:
                message = "censored" in data and CENSORED_MSG or data.get("msg") or "failed"
                self._last_failure[host] = "%s: %s" % (result.task_name, message)
            return
        self._relevant = True
        if isinstance(data.get("results"), list):
            return  # a loop: each item came through v2_runner_item_on_ok/failed
        step = step_from_result(module, args, data, status, result.task_name, item=item)
        if step is not None:
            self._steps.setdefault(host, []).append(step)

    def v2_runner_on_ok(self, result):
        self._record(result, STATUS_CHANGED if _result_dict(result).get("changed") else STATUS_OK)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, STATUS_FAILED, ignore_errors=bool(ignore_errors))

    def _item_label(self, result):
        data = _result_dict(result)
        label = data.get("_ansible_item_label", data.get("item"))
        if isinstance(label, dict):
            label = label.get("name") or label.get("job") or ""
        return label if isinstance(label, (str, int, float)) else ""

    def v2_runner_item_on_ok(self, result):
        data = _result_dict(result)
        self._record(result, STATUS_CHANGED if data.get("changed") else STATUS_OK, item=self._item_label(result))

    def v2_runner_item_on_failed(self, result):
        # Only this collection's items count here: a failed loop of another module ends in
        # v2_runner_on_failed, which records it for the host.
        self._record(result, STATUS_FAILED, ignore_errors=True, item=self._item_label(result))

    def v2_runner_on_unreachable(self, result):
        try:
            host = result.host.get_name()
            data = _result_dict(result)
            self._unreachable[host] = "unreachable: %s" % (data.get("msg") or "no connection")
        except Exception:
            pass

    # -------------------------------------------------------------- sending

    def v2_playbook_on_stats(self, stats):
        try:
            self._report(stats)
        except Exception as exc:  # a report must never fail the run
            self._warn("no report sent: %s" % exc)

    def _report(self, stats):
        if not self._relevant:
            self._display.vv("songmetrix.backup.email_report: no backup task ran, no mail")
            return
        failed_hosts = {host for host, number in (getattr(stats, "failures", {}) or {}).items() if number}
        for host, number in (getattr(stats, "dark", {}) or {}).items():
            if number and host not in self._unreachable:
                self._unreachable[host] = "unreachable"
        rows = build_rows(self._steps, self._role_rows, self._unreachable, failed_hosts, self._last_failure)
        if not rows:
            self._display.vv("songmetrix.backup.email_report: no job results, no mail")
            return
        opts, problem = self._settings()
        if problem:
            self._warn("no mail sent: %s" % problem)
            return
        status = overall_status(rows)
        if opts["send_on"] == "failure" and status != STATUS_FAILED:
            self._display.vv("songmetrix.backup.email_report: no failure, no mail (send_on=failure)")
            return
        if opts["send_on"] == "change" and status == STATUS_OK:
            self._display.vv("songmetrix.backup.email_report: nothing changed, no mail (send_on=change)")
            return
        message = self.build_message(rows, opts)
        self._send(message, opts)

    def build_message(self, rows, opts):
        secrets = set(self._secrets)
        if opts.get("password"):
            secrets.add(opts["password"])
        environment = opts.get("environment") or ""
        title = redact_text(subject(rows, opts.get("subject_prefix") or "", environment), secrets)
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        message = EmailMessage()
        message["Subject"] = title
        message["From"] = opts["sender"]
        message["To"] = ", ".join(opts["to"])
        if opts.get("cc"):
            message["Cc"] = ", ".join(opts["cc"])
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=opts["sender"].rpartition("@")[2] or None)
        message["Auto-Submitted"] = "auto-generated"
        message["X-Songmetrix-Backup-Status"] = overall_status(rows).upper()
        message.set_content(render_text(rows, secrets, environment, when), cte="quoted-printable")
        message.add_alternative(render_html(rows, secrets, environment, when, title),
                                subtype="html", cte="quoted-printable")
        return message

    def _send(self, message, opts):
        host, port, timeout = opts["smtp_host"], int(opts["smtp_port"]), int(opts["timeout"])
        where = "%s:%s" % (host, port)
        try:
            # Certificate and host name verified, always: the system's trust store or the given CAs.
            context = ssl_lib.create_default_context(cafile=opts["ca_file"] or None)
            if opts["ssl"]:
                client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
            else:
                client = smtplib.SMTP(host, port, timeout=timeout)
            with client:
                if opts["starttls"]:
                    client.starttls(context=context)
                if opts["user"]:
                    client.login(opts["user"], opts["password"] or "")
                refused = client.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            self._warn("no mail sent: %s refused the login of %s (%s)" % (where, opts["user"], exc.smtp_code))
            return
        except (smtplib.SMTPException, OSError) as exc:
            self._warn("no mail sent to %s: %s: %s" % (where, type(exc).__name__, redact_text(str(exc))))
            return
        if refused:
            self._warn("the mail server refused some recipients: %s" % ", ".join(sorted(refused)))
        self._display.v("songmetrix.backup.email_report: mail sent to %s via %s" % (
            ", ".join(opts["to"] + opts["cc"]), where))
