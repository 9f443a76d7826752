# Copyright: songmetrix.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status report as one static HTML page (filter songmetrix.backup.status_report_html).

No external assets: inline CSS, one inline SVG chart per job, and a few lines of inline script that
only refresh the ages (and their colours) against the browser's clock; without the script the page
shows the ages as of ``generated_at``. Every value is HTML-escaped; nothing links or loads anything.
"""

from __future__ import annotations

import html

from ansible_collections.songmetrix.backup.plugins.plugin_utils.status_report import parse_time

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1f2328;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#59636e;font-size:13px;margin-bottom:14px}
.cards{display:flex;gap:10px;flex-wrap:wrap;margin:10px 0 4px}
.card{border:1px solid #d1d9e0;border-radius:6px;padding:8px 14px;min-width:92px}
.card b{display:block;font-size:22px}.card span{font-size:12px;color:#59636e}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #d1d9e0;padding:6px 8px;text-align:left;vertical-align:middle}
th{background:#f6f8fa;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-weight:600;font-size:12px;color:#fff}
.status-ok .badge.st,.badge.green{background:#1a7f37}.status-warning .badge.st,.badge.amber{background:#bf8700}
.status-critical .badge.st,.badge.red{background:#cf222e}.badge.grey{background:#6e7781}
tr.status-critical td:first-child{border-left:4px solid #cf222e}
tr.status-warning td:first-child{border-left:4px solid #bf8700}
tr.status-ok td:first-child{border-left:4px solid #1a7f37}
.err{color:#cf222e;font-size:12px;max-width:360px;word-break:break-word}
.small{color:#59636e;font-size:12px}svg{display:block}
"""

_SCRIPT = """
(function(){var now=Date.now()/1000;document.querySelectorAll('[data-finished]').forEach(function(el){
var age=now-Number(el.getAttribute('data-finished'));if(!(age>=0))return;
var g=Number(el.getAttribute('data-green')),r=Number(el.getAttribute('data-red'));
var b=el.querySelector('.badge');
if(b){b.className='badge '+(age<g?'green':(age<r?'amber':'red'));b.textContent=fmt(age);}});
function fmt(s){if(s<90)return Math.round(s)+' s';if(s<5400)return Math.round(s/60)+' min';
if(s<172800)return (s/3600).toFixed(1)+' h';return (s/86400).toFixed(1)+' d';}})();
"""


def human_bytes(value):
    if value is None:
        return "\u2013"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024.0
    return "%.1f PiB" % value


def human_age(seconds):
    if seconds is None:
        return "never"
    seconds = float(seconds)
    if seconds < 90:
        return "%d s" % seconds
    if seconds < 5400:
        return "%d min" % round(seconds / 60)
    if seconds < 172800:
        return "%.1f h" % (seconds / 3600)
    return "%.1f d" % (seconds / 86400)


def human_interval(seconds):
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return "%d %s" % (seconds // size, unit)
    return human_age(seconds)


def _e(value):
    return html.escape("" if value is None else str(value), quote=True)


def chart_svg(job, settings, width=300, height=64):
    """Stored bytes per backup over the chart window: bars at their start times, an inline SVG."""
    start, end = parse_time(settings["chart_start"]), parse_time(settings["chart_end"])
    span = max(1.0, (end - start).total_seconds())
    points = [(parse_time(h["started"]), h["stored_size"]) for h in job.get("history") or []]
    points = [(t, s) for t, s in points if t is not None]
    left, bottom, top = 2, height - 14, 12
    plot_w, plot_h = width - left - 2, bottom - top
    label = "Stored size of %s over %d days" % (job.get("job"), settings["chart_days"])
    parts = ['<svg class="chart" role="img" aria-label="%s" width="%d" height="%d" viewBox="0 0 %d %d">'
             % (_e(label), width, height, width, height),
             '<title>%s</title>' % _e(label),
             '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#d1d9e0"/>' % (left, bottom, width - 2, bottom)]
    if not points:
        parts.append('<text x="%d" y="%d" font-size="11" fill="#6e7781">no backups in %d days</text>'
                     % (left + 4, top + plot_h // 2 + 4, settings["chart_days"]))
    else:
        peak = max(s for _t, s in points) or 1
        interval = float(job.get("interval_seconds") or 86400)
        bar_w = max(1.5, min(8.0, plot_w * interval / span * 0.8))
        for moment, size in points:
            x = left + plot_w * (moment - start).total_seconds() / span - bar_w / 2
            x = min(max(left, x), width - 2 - bar_w)
            h = max(1.0, plot_h * size / float(peak))
            parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#0969da">'
                         '<title>%s: %s</title></rect>'
                         % (x, bottom - h, bar_w, h, _e(moment.strftime("%Y-%m-%d %H:%M UTC")), _e(human_bytes(size))))
        parts.append('<text x="%d" y="10" font-size="10" fill="#59636e">max %s</text>' % (left, _e(human_bytes(peak))))
    parts.append('<text x="%d" y="%d" font-size="10" fill="#59636e">%s</text>'
                 % (left, height - 2, _e(settings["chart_start"][:10])))
    parts.append('<text x="%d" y="%d" font-size="10" fill="#59636e" text-anchor="end">%s</text>'
                 % (width - 2, height - 2, _e(settings["chart_end"][:10])))
    parts.append("</svg>")
    return "".join(parts)


def _rate_cell(rate):
    if not rate or rate.get("rate") is None:
        return '<td class="num">\u2013</td>'
    percent = 100.0 * rate["rate"]
    colour = "green" if percent >= 95 else ("amber" if percent >= 80 else "red")
    note = "%d of %d expected runs over %s days" % (rate["with_backup"], rate["expected"], rate["window_days"])
    if rate.get("limited_by_retention"):
        note += " (the retention keeps every run only that long)"
    return '<td class="num"><span class="badge %s" title="%s">%.0f%%</span><div class="small">%d/%d</div></td>' % (
        colour, _e(note), percent, rate["with_backup"], rate["expected"])


def _job_row(job, settings):
    success = job.get("last_success")
    finished = parse_time(success["finished"]) if success else None
    if success:
        age_cell = ('<td data-finished="%d" data-green="%d" data-red="%d"><span class="badge %s">%s</span>'
                    '<div class="small">%s</div></td>'
                    % (finished.timestamp(), job["green_below_seconds"], job["red_from_seconds"], job["staleness"],
                       _e(human_age(success.get("age_seconds"))), _e(success["finished"])))
    else:
        age_cell = '<td><span class="badge red">never</span></td>'
    attempt = job.get("last_attempt")
    if attempt:
        colour = "green" if attempt.get("status") == "ok" else "red"
        attempt_cell = '<td><span class="badge %s">%s</span><div class="small">%s</div>%s</td>' % (
            colour, _e(attempt.get("status")), _e(attempt.get("finished") or attempt.get("started")),
            '<div class="err">%s</div>' % _e(attempt["error"]) if attempt.get("error") else "")
    else:
        attempt_cell = '<td><span class="small">no record</span></td>'
    reasons = "; ".join(job.get("reasons") or [])
    error = '<div class="err">%s</div>' % _e(job["error"]) if job.get("error") else ""
    schedule = job.get("schedule") or "no schedule"
    interval_note = "every %s (%s)" % (human_interval(job["interval_seconds"]),
                                       "from the schedule" if job["interval_source"] == "schedule" else "assumed")
    return "".join([
        '<tr class="job status-%s" data-host="%s" data-job="%s">'
        % (_e(job["status"]), _e(job["host"]), _e(job["job"])),
        '<td><span class="badge st">%s</span><div class="small">%s</div>%s</td>'
        % (_e(job["status"]), _e(reasons), error),
        '<td>%s</td>' % _e(job["host"]),
        '<td><b>%s</b><div class="small">%s %s</div><div class="small">%s; %s</div></td>'
        % (_e(job["job"]), _e(job.get("engine") or ""), _e(job.get("what") or ""), _e(schedule), _e(interval_note)),
        age_cell,
        attempt_cell,
        '<td class="num">%d</td>' % job["backups_kept"],
        '<td class="num">%s</td>' % _e(human_bytes(job.get("newest_size"))),
        '<td>%s</td>' % chart_svg(job, settings),
        _rate_cell(job.get("success_rate")),
        '<td class="small">%s<div>verify: %s</div></td>' % (_e(job["storage"]), _e(job["verify"])),
        "</tr>",
    ])


def render(report):
    settings = report["settings"]
    counts = report["counts"]
    title = report.get("title") or "Backup status"
    cards = [
        (counts["jobs"], "jobs"), (counts["critical"], "critical"), (counts["warning"], "warning"),
        (counts["ok"], "ok"), (counts["hosts"], "hosts"), (counts["backups"], "backups"),
        (human_bytes(counts["stored_bytes"]), "stored"),
    ]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="songmetrix-report-fingerprint" content="%s">' % _e(report.get("fingerprint")),
        "<title>%s: %s</title>" % (_e(title), _e(report["status"])),
        "<style>%s</style></head><body>" % _CSS,
        '<h1>%s <span class="badge %s">%s</span></h1>' % (
            _e(title), {"ok": "green", "warning": "amber"}.get(report["status"], "red"), _e(report["status"])),
        '<div class="meta">Generated %s. Success rates over up to %d days; charts over %d days (%s to %s). '
        'Ages are as of generation (refreshed by the browser when scripts run).</div>' % (
            _e(report["generated_at"]), settings["window_days"], settings["chart_days"],
            _e(settings["chart_start"][:10]), _e(settings["chart_end"][:10])),
        '<div class="cards">%s</div>' % "".join(
            '<div class="card"><b>%s</b><span>%s</span></div>' % (_e(value), _e(name)) for value, name in cards),
    ]
    if report.get("hosts_without_data"):
        out.append("<h2>Hosts without data</h2><ul>")
        out.extend('<li class="err">%s: %s</li>' % (_e(h["host"]), _e(h["error"]))
                   for h in report["hosts_without_data"])
        out.append("</ul>")
    out.append('<h2>Jobs</h2><table id="jobs"><thead><tr><th>Status</th><th>Host</th><th>Job</th>'
               '<th>Last success</th><th>Last attempt</th><th>Backups</th><th>Newest size</th>'
               '<th>Size over %d days</th><th>Success rate</th><th>Storage</th></tr></thead><tbody>'
               % settings["chart_days"])
    out.extend(_job_row(job, settings) for job in report["jobs"])
    if not report["jobs"]:
        out.append('<tr><td colspan="10" class="small">No jobs.</td></tr>')
    out.append('</tbody></table><h2>Storage used per location</h2><table id="locations"><thead><tr>'
               '<th>Location</th><th>Type</th><th>Jobs</th><th>Backups</th><th>Stored</th></tr></thead><tbody>')
    out.extend('<tr class="location"><td>%s</td><td>%s</td><td class="num">%d</td><td class="num">%d</td>'
               '<td class="num">%s</td></tr>' % (_e(loc["location"]), _e(loc["type"]), loc["jobs"], loc["backups"],
                                                 _e(human_bytes(loc["stored_bytes"])))
               for loc in report["locations"])
    out.append("</tbody></table>")
    out.append('<p class="small">Successful backups are what storage holds (manifests); a failed run is only '
               "visible through the job's last-attempt record, so older failures are not counted "
               "separately: the success rate counts expected runs without a backup as misses.</p>")
    out.append("<script>%s</script></body></html>" % _SCRIPT)
    return "\n".join(out) + "\n"
