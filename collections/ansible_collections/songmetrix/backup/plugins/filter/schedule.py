# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the songmetrix.backup collection for schedules (role backup_schedule)."""

from ansible_collections.songmetrix.backup.plugins.module_utils import schedule as _schedule


def schedule_plan(jobs, default_scheduler="systemd", default_timezone="", randomized_delay="15m",
                  systemd_analyze=True):
    """Check the schedules of a host's jobs; see schedule_plan.yml."""
    return _schedule.plan(list(jobs or []), default_scheduler=default_scheduler,
                          default_timezone=default_timezone or "", randomized_delay=randomized_delay,
                          use_systemd_analyze=bool(systemd_analyze))


def valid_schedule(schedule, scheduler="systemd"):
    """True when ``schedule`` is a valid cron expression (scheduler cron) or OnCalendar string."""
    try:
        if scheduler == "cron":
            _schedule.parse_cron(schedule)
        else:
            _schedule.check_oncalendar(schedule)
    except ValueError:
        return False
    return True


class FilterModule(object):
    def filters(self):
        return {
            "schedule_plan": schedule_plan,
            "valid_schedule": valid_schedule,
        }
