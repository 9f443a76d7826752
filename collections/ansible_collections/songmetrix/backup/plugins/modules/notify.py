#!/usr/bin/python
# Copyright: songmetrix engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: notify
short_description: Report a backup job's start, success, failure or skipped run to webhooks, health pings and a JSON log
version_added: 0.5.0
description:
  - Sends one job event to chat webhooks (Slack, Discord, Microsoft Teams), to generic JSON
    webhooks, and to a healthchecks.io-compatible ping URL, and appends one JSON line to an
    event log on the host.
  - "Health pings: C(start) goes to C(<url>/start), C(success) to C(<url>), C(failure) to
    C(<url>/fail) with a log excerpt of at most 10 kB as body (its tail is kept), C(skipped) to
    C(<url>/log) (recorded in the check's events without changing its state). A job that
    stops running at all is then noticed by the monitor's own schedule."
  - "Microsoft Teams: the payload is an Adaptive Card (version 1.4) in a C(message) envelope, as
    the Teams Workflows app (Power Automate, I(When a Teams webhook request is received)) expects.
    Legacy Office 365 connector MessageCards are not sent: those connectors are retired."
  - Webhook and ping URLs carry their tokens in the path, so they are secrets; results and
    messages show them only as C(scheme://host/…).
  - O(summary), O(details), O(log) and the O(log_path) excerpt are redacted before they leave
    the module. Values under keys named like a credential (password, secret, token, passphrase,
    key, ...), URIs with C(user:password@), C(password=...) pairs and bearer tokens are masked.
    Secrets should never be passed in the first place.
  - Each request has a timeout and is retried once after a 5xx answer or a connection error. A
    failed delivery is a warning, and the task succeeds, unless O(fail_on_error=true).
  - Uses only the Python standard library on the target.
author:
  - songmetrix engineering (@songmetrix)
options:
  job:
    description: Name of the backup job.
    type: str
    required: true
  event:
    description:
      - What happened to the job. C(skipped) is a scheduled run that found another run of the job
        holding its lock and did nothing (the role C(backup_schedule) sends it for every such run).
    type: str
    required: true
    choices: [start, success, failure, skipped]
  host:
    description: The host name reported; the target's host name when omitted.
    type: str
  summary:
    description:
      - A summary, or the error text of a failure (the event's C(message)). Redacted, and shortened to its end
        in chat messages.
    type: str
  details:
    description:
      - The job's result (engine, database, raw_size, stored_size, duration_seconds, manifest_key,
        sha256, storage, started, finished, ...). Redacted; sent whole in the generic JSON payload.
    type: dict
  log:
    description:
      - A log excerpt sent as the body of a C(failure) ping (its last 10 kB, after redaction).
    type: str
  log_path:
    description:
      - A log file on the host whose end is sent as the body of a C(failure) ping when O(log) is not given.
        A file that cannot be read gives a warning.
    type: path
  webhooks:
    description: Chat and JSON webhooks.
    type: list
    elements: dict
    default: []
    suboptions:
      type:
        description:
          - "C(slack): an incoming webhook; Block Kit blocks with a C(text) fallback."
          - "C(discord): C(content) and one embed; mentions are disabled."
          - "C(teams): an Adaptive Card for a Teams Workflows webhook."
          - "C(json): the event dict itself (the RV(event) return value)."
        type: str
        required: true
        choices: [slack, discord, teams, json]
      url:
        description: The webhook URL (a secret).
        type: str
        required: true
      events:
        description:
          - The events sent to this webhook. Named C(events), not C(on), because YAML 1.1 reads a
            bare C(on) key as a boolean.
        type: list
        elements: str
        choices: [start, success, failure, skipped]
        default: [failure]
      timeout:
        description: Seconds to wait for the connection and for the answer, per attempt.
        type: int
        default: 10
      headers:
        description: Extra HTTP headers, for example an C(Authorization) header of a JSON receiver (secret).
        type: dict
  healthchecks:
    description: A healthchecks.io-compatible check, pinged on every event.
    type: dict
    suboptions:
      url:
        description:
          - The check's ping URL, such as C(https://hc-ping.com/<uuid>) or C(https://hc-ping.com/<ping-key>/<slug>)
            (a secret). C(/start) and C(/fail) are appended to it.
        type: str
        required: true
      timeout:
        description: Seconds to wait for the connection and for the answer, per attempt.
        type: int
        default: 10
  event_log:
    description:
      - A file on the host to which one JSON line per event is appended (created with mode 0640,
        its directory with 0750). Keys are C(time) (UTC, ISO 8601), C(host), C(job), C(event),
        C(status) (running, ok, failed or skipped), C(message), C(duration_seconds), C(raw_size),
        C(stored_size), C(manifest_key), C(engine), C(database), C(storage), C(sha256), C(kind).
    type: path
  fail_on_error:
    description: Fail the task when a webhook, ping or the event log cannot be reached or written.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Nothing is sent or written; RV(would_send) and RV(would_log) show what would be.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in diff_mode).
    support: none
seealso:
  - module: songmetrix.backup.metrics
  - name: healthchecks.io pinging API
    description: The ping URLs this module calls.
    link: https://healthchecks.io/docs/http_api/
"""

EXAMPLES = r"""
- name: Tell the monitor that the job starts
  songmetrix.backup.notify:
    job: orders-db
    event: start
    healthchecks:
      url: "{{ vault_hc_orders_url }}"
    event_log: /var/log/songmetrix-backup/events.jsonl

- name: Report a failure to Slack and Teams, and ping /fail with the error
  songmetrix.backup.notify:
    job: orders-db
    event: failure
    summary: "{{ backup.msg }}"
    details: "{{ backup }}"
    webhooks:
      - type: slack
        url: "{{ vault_slack_webhook }}"
      - type: teams
        url: "{{ vault_teams_workflow_url }}"
        events: [failure, success]
    healthchecks:
      url: "{{ vault_hc_orders_url }}"
    event_log: /var/log/songmetrix-backup/events.jsonl
"""

RETURN = r"""
event:
  description: The event as sent to generic JSON webhooks, after redaction.
  returned: always
  type: dict
  sample:
    version: 1
    source: songmetrix.backup
    time: "2026-11-23T02:04:10Z"
    host: db1
    job: orders-db
    event: success
    status: ok
    message: null
    engine: postgresql
    database: orders
    storage: "s3:backups/prod"
    duration_seconds: 250.2
    raw_size: 1073741824
    stored_size: 215000000
    manifest_key: prod/orders-db/2026/11/23/orders-db-20261123T020000Z.manifest.json
    sha256: 9f86d081884c7d65...
    kind: scheduled
    details: {}
sent:
  description: One entry per webhook or ping that was called.
  returned: always
  type: list
  elements: dict
  contains:
    type:
      description: slack, discord, teams, json or healthchecks.
      type: str
    target:
      description: The URL reduced to C(scheme://host/…), with C(/start) or C(/fail) for pings.
      type: str
    status_code:
      description: The HTTP status of the last attempt, or null when there was no answer.
      type: int
    attempts:
      description: 1, or 2 when the request was retried.
      type: int
    retried_because:
      description: The first attempt's error, when it was retried.
      type: str
      returned: when retried
    error:
      description: Why it was not delivered.
      type: str
      returned: on failure
logged:
  description: Whether a line was appended to O(event_log).
  returned: always
  type: bool
would_send:
  description: In check mode, the same entries as RV(sent) with the C(payload) each would receive.
  returned: check mode
  type: list
  elements: dict
would_log:
  description: In check mode, the line that would be appended to O(event_log) (null without one).
  returned: check mode
  type: dict
"""

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.module_base import BackupModule
from ansible_collections.songmetrix.backup.plugins.module_utils.notification import EVENTS as NOTIFY_EVENTS
from ansible_collections.songmetrix.backup.plugins.module_utils.notification import run_notify
from ansible_collections.songmetrix.backup.plugins.module_utils.redact import redact_data

EVENTS = list(NOTIFY_EVENTS)


def main():
    module = BackupModule(
        argument_spec=dict(
            job=dict(type="str", required=True),
            event=dict(type="str", required=True, choices=EVENTS),
            host=dict(type="str"),
            summary=dict(type="str"),
            details=dict(type="dict"),
            log=dict(type="str"),
            log_path=dict(type="path"),
            webhooks=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    type=dict(type="str", required=True, choices=["slack", "discord", "teams", "json"]),
                    url=dict(type="str", required=True, no_log=True),
                    events=dict(type="list", elements="str", choices=EVENTS, default=["failure"]),
                    timeout=dict(type="int", default=10),
                    headers=dict(type="dict", no_log=True),
                ),
            ),
            healthchecks=dict(
                type="dict",
                options=dict(
                    url=dict(type="str", required=True, no_log=True),
                    timeout=dict(type="int", default=10),
                ),
            ),
            event_log=dict(type="path"),
            fail_on_error=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    module.run(_notify)


def _notify(module):
    # The echo of the arguments (ansible-core < 2.21) is redacted too: summary, details and log
    # may hold what the module masks everywhere else.
    invocation = {"module_args": redact_data(module.params, module._secrets())}
    try:
        result = run_notify(module.params, check_mode=module.check_mode, secrets=module._secrets())
    except BackupError as exc:
        exc.details.setdefault("invocation", invocation)
        raise
    result["invocation"] = invocation
    return result


if __name__ == "__main__":
    main()
