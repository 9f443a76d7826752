#!/usr/bin/python
# Copyright: songmetrix engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: metrics
short_description: Write a backup job's Prometheus metrics for node_exporter's textfile collector
version_added: 0.5.0
description:
  - Writes C(<textfile_dir>/songmetrix_backup_<job>.prom) in the Prometheus text exposition
    format, for node_exporter's textfile collector (C(--collector.textfile.directory)).
  - "Gauges, each labelled C(job) plus O(labels): C(songmetrix_backup_last_success_timestamp_seconds),
    C(songmetrix_backup_last_attempt_timestamp_seconds), C(songmetrix_backup_last_status) (1 success, 0 failure),
    C(songmetrix_backup_duration_seconds), C(songmetrix_backup_raw_bytes), C(songmetrix_backup_stored_bytes),
    C(songmetrix_backup_verify_status) (1 ok, 0 failed, -1 skipped) and C(songmetrix_backup_backups_kept).
    A metric whose value is not known is left out."
  - "When O(status=failure), the last success time and the last backup's sizes and count are kept
    from the existing file (the last success is 0 when none was ever recorded), so a staleness
    alert keeps counting from the last good backup."
  - The file is replaced atomically (a temporary file in the same directory, fsync, rename) with
    mode 0644, and only when its content changes, so the same input twice reports no change.
author:
  - songmetrix engineering (@songmetrix)
options:
  textfile_dir:
    description: node_exporter's textfile directory; it must exist.
    type: path
    required: true
  job:
    description: Name of the backup job (the C(job) label and the file's name).
    type: str
    required: true
  status:
    description: The result of the job's run.
    type: str
    required: true
    choices: [success, failure]
  started:
    description: When the run started, as Unix seconds or ISO 8601 (C(2026-11-23T02:00:00Z)).
    type: str
  finished:
    description:
      - When the run ended, as Unix seconds or ISO 8601. Without it, O(started) plus
        O(duration_seconds), or else the current time. Give it to make the task idempotent.
    type: str
  duration_seconds:
    description: Duration of the run; computed from O(started) and O(finished) when omitted.
    type: float
  raw_bytes:
    description: Size of the backup before compression and encryption.
    type: int
  stored_bytes:
    description: Size of the backup as stored.
    type: int
  verify_status:
    description: Result of the verification after the backup, if one ran.
    type: str
    choices: [ok, failed, skipped]
  backups_kept:
    description: Number of the job's backups kept in storage (after pruning).
    type: int
  labels:
    description:
      - Extra labels for every metric, such as C(engine), C(database), C(storage). Names are
        Prometheus label names (not C(job), not starting with C(__)); values are escaped.
    type: dict
    default: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in diff_mode).
    support: full
notes:
  - Prometheus renames a scraped C(job) label to C(exported_job) unless the scrape job sets
    C(honor_labels), because C(job) names the scrape job itself; queries and alert rules use
    C(exported_job) then.
seealso:
  - module: songmetrix.backup.notify
  - name: node_exporter textfile collector
    description: Where the file is read.
    link: https://github.com/prometheus/node_exporter#textfile-collector
"""

EXAMPLES = r"""
- name: Record the result of the orders backup
  songmetrix.backup.metrics:
    textfile_dir: /var/lib/prometheus/node-exporter
    job: orders-db
    status: "{{ 'failure' if backup is failed else 'success' }}"
    started: "{{ backup.manifest.started | default(omit) }}"
    finished: "{{ backup.manifest.finished | default(omit) }}"
    raw_bytes: "{{ backup.manifest.raw_size | default(omit) }}"
    stored_bytes: "{{ backup.manifest.stored_size | default(omit) }}"
    verify_status: ok
    backups_kept: "{{ pruned.kept | default([]) | length }}"
    labels:
      engine: postgresql
      database: orders
      storage: s3
"""

RETURN = r"""
path:
  description: The metrics file.
  returned: always
  type: str
  sample: /var/lib/prometheus/node-exporter/songmetrix_backup_orders-db.prom
metrics:
  description: The values written, by metric name (without labels).
  returned: always
  type: dict
  sample:
    songmetrix_backup_last_success_timestamp_seconds: 1795399200
    songmetrix_backup_last_attempt_timestamp_seconds: 1795399200
    songmetrix_backup_last_status: 1
    songmetrix_backup_duration_seconds: 250.2
"""

from ansible_collections.songmetrix.backup.plugins.module_utils.metrics_textfile import run_metrics
from ansible_collections.songmetrix.backup.plugins.module_utils.module_base import BackupModule


def main():
    module = BackupModule(
        argument_spec=dict(
            textfile_dir=dict(type="path", required=True),
            job=dict(type="str", required=True),
            status=dict(type="str", required=True, choices=["success", "failure"]),
            started=dict(type="str"),
            finished=dict(type="str"),
            duration_seconds=dict(type="float"),
            raw_bytes=dict(type="int"),
            stored_bytes=dict(type="int"),
            verify_status=dict(type="str", choices=["ok", "failed", "skipped"]),
            backups_kept=dict(type="int"),
            labels=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    module.run(lambda m: run_metrics(m.params, check_mode=m.check_mode, diff=m._diff))


if __name__ == "__main__":
    main()
