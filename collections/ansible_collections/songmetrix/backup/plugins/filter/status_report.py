# Copyright: songmetrix.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the songmetrix.backup collection for the status report (playbooks/report.yml).

Documentation: status_report.yml and status_report_html.yml beside this file.
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.songmetrix.backup.plugins.plugin_utils import status_report as _report
from ansible_collections.songmetrix.backup.plugins.plugin_utils import status_report_html as _html


def status_report(data, now=None, stale_after="26h", window_days=30, chart_days=90, default_interval="1d",
                  scheduler="systemd", title="Backup status", hosts=None):
    """backup_info results per host and job -> the report dict; see status_report.yml."""
    try:
        return _report.build_report(list(data or []), now=now, stale_after=stale_after, window_days=window_days,
                                    chart_days=chart_days, default_interval=default_interval,
                                    scheduler=scheduler, title=title, hosts=list(hosts or []))
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError("status_report: %s" % exc)


def status_report_html(report):
    """The report dict -> one static HTML page; see status_report_html.yml."""
    if not isinstance(report, dict) or "jobs" not in report:
        raise AnsibleFilterError("status_report_html: the input is not a status_report dict")
    try:
        return _html.render(report)
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError("status_report_html: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {
            "status_report": status_report,
            "status_report_html": status_report_html,
        }
