"""playbooks/report.yml on the demo: the JSON and HTML status report, idempotence, and the page in Chromium.

Two demo backups, then a third run whose SQLite source is missing (the health check off, so the dump
itself fails and records the failed attempt), then the report with one more job that was never
backed up and has a password in its source. Everything is written under a temporary var dir.
"""

import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.playbook.test_demo import run_playbook

pytestmark = pytest.mark.slow

PLAYBOOK = "playbooks/report.yml"
SECRET = "Pw-report-3b1f-never-show-me"


def _jobs(var_dir):
    """The demo's two jobs (as in inventories/demo) and a never-run PostgreSQL job with a password."""
    storage = {"type": "local", "path": f"{var_dir}/backups"}
    retention = {"keep_last": 10, "keep_daily": 7, "keep_weekly": 4}
    return [
        {"name": "demo-sqlite", "source": {"engine": "sqlite", "path": f"{var_dir}/demo/demo.sqlite3"},
         "storage": storage, "compression": "zstd", "retention": retention},
        {"name": "demo-files", "source": {"engine": "files", "path": f"{var_dir}/demo/files"},
         "storage": storage, "compression": "zstd", "retention": retention, "verify": True,
         "schedule": "*-*-* 02:30"},
        {"name": "pg-never", "source": {"engine": "postgresql", "host": "127.0.0.1", "port": 9, "user": "backup",
                                        "password": SECRET, "database": "orders"},
         "storage": storage, "schedule": "0 3 * * *", "scheduler": "cron"},
    ]


def _manifests(var_dir, job):
    return [json.loads(p.read_text()) for p in sorted((Path(var_dir) / "backups" / job).rglob("*.manifest.json"))]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    var_dir = base / "var"
    for _ in range(2):
        run_playbook(var_dir, check=0)
    broken = run_playbook(var_dir, "-e", "job=demo-sqlite", "-e", "backup_run_healthcheck=false",
                          "-e", f"songmetrix_demo_sqlite_path={var_dir}/missing.sqlite3")
    assert broken.returncode != 0, broken.stdout
    extra = base / "jobs.json"
    extra.write_text(json.dumps({"songmetrix_backup_jobs": _jobs(var_dir)}))
    first = run_playbook(var_dir, "-e", f"@{extra}", playbook=PLAYBOOK, check=0)
    out = var_dir / "report"
    return {
        "var_dir": var_dir, "extra": extra, "first": first, "dir": out,
        "data": json.loads((out / "report.json").read_text()),
        "html": (out / "index.html").read_text(),
    }


def _job(data, name):
    (found,) = [j for j in data["jobs"] if j["job"] == name]
    return found


def test_report_json(report):
    data, var_dir = report["data"], report["var_dir"]
    assert data["format_version"] == 1
    assert data["counts"]["jobs"] == 3 and data["counts"]["hosts"] == 1
    assert data["counts"]["critical"] == 2 and data["counts"]["ok"] == 1
    assert data["counts"]["never"] == 1 and data["counts"]["last_attempt_failed"] == 1
    assert data["status"] == "critical"
    # Failing and stale jobs first.
    assert [j["status"] for j in data["jobs"]] == ["critical", "critical", "ok"]

    files = _job(data, "demo-files")
    manifests = _manifests(var_dir, "demo-files")
    assert len(manifests) == 2
    assert files["backups_kept"] == 2
    assert [h["stored_size"] for h in files["history"]] == [m["stored_size"] for m in manifests]
    newest = max(manifests, key=lambda m: m["started"])
    assert files["newest_size"] == newest["stored_size"] == files["last_success"]["stored_size"]
    assert files["last_success"]["raw_size"] == newest["raw_size"]
    assert files["stored_bytes"] == sum(m["stored_size"] for m in manifests)
    assert files["staleness"] == "green" and files["status"] == "ok"
    assert files["last_attempt"]["status"] == "ok"
    assert files["interval_source"] == "schedule" and files["interval_seconds"] == 86400
    assert files["success_rate"]["with_backup"] >= 1 and files["success_rate"]["rate"] == 1.0
    assert files["verify"] == "after each backup"

    sqlite = _job(data, "demo-sqlite")
    assert sqlite["backups_kept"] == 2 and sqlite["staleness"] == "green"
    assert sqlite["last_attempt"]["status"] == "failed"
    assert "missing.sqlite3" in sqlite["last_attempt"]["error"]
    assert sqlite["status"] == "critical" and sqlite["reasons"][0] == "last attempt failed"
    assert sqlite["interval_source"] == "default"

    never = _job(data, "pg-never")
    assert never["last_success"] is None and never["staleness"] == "red" and never["status"] == "critical"
    assert never["success_rate"] is None and never["backups_kept"] == 0

    (location,) = data["locations"]
    assert location["location"] == f"local:{var_dir}/backups"
    everything = _manifests(var_dir, "demo-files") + _manifests(var_dir, "demo-sqlite")
    assert location["stored_bytes"] == sum(m["stored_size"] for m in everything) == data["counts"]["stored_bytes"]
    assert location["backups"] == 4


def test_report_html(report):
    page = report["html"]
    assert page.startswith("<!DOCTYPE html>")
    rows = re.findall(r'<tr class="job status-(\w+)" data-host="localhost" data-job="([^"]+)"', page)
    assert [job for _status, job in rows][2] == "demo-files"
    assert sorted(job for _status, job in rows) == ["demo-files", "demo-sqlite", "pg-never"]
    assert page.count("<svg") == 3
    assert '<table id="locations">' in page
    # One file, nothing to fetch: no external URL at all.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<img" not in page and "@import" not in page


def test_no_secret_anywhere(report):
    for text in (report["html"], json.dumps(report["data"]), report["first"].stdout, report["first"].stderr):
        assert SECRET not in text


def test_second_run_changes_nothing(report):
    json_file, html_file = report["dir"] / "report.json", report["dir"] / "index.html"
    before = (json_file.stat().st_mtime_ns, html_file.stat().st_mtime_ns, html_file.read_bytes())
    again = run_playbook(report["var_dir"], "-e", f"@{report['extra']}", playbook=PLAYBOOK, check=0)
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=0\s", again.stdout), again.stdout
    assert (json_file.stat().st_mtime_ns, html_file.stat().st_mtime_ns, html_file.read_bytes()) == before


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium not found: install Debian's chromium (scripts/install-test-deps.sh)")


def _png_pixels(data):
    """(width, height, rows of RGB(A) bytes) of a non-interlaced 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, colour, _c, _f, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                upleft = previous[i - bpp] if i >= bpp else 0
                p = left + up - upleft
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else (up if pb <= pc else upleft))) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, bpp, rows


def test_page_renders_in_chromium(report, tmp_path):
    browser = _chromium()
    page = (report["dir"] / "index.html").as_uri()
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(common + ["--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr
    assert '<table id="jobs">' in dom.stdout and dom.stdout.count("<svg") == 3
    assert len(re.findall(r'<tr class="job status-', dom.stdout)) == 3
    assert len(re.findall(r"<rect ", dom.stdout)) == 4  # one bar per stored backup

    shot = tmp_path / "report.png"
    proc = subprocess.run(common + [f"--screenshot={shot}", "--window-size=1024,700", page],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr
    width, height, bpp, rows = _png_pixels(shot.read_bytes())
    assert (width, height) == (1024, 700)
    colours = set()
    non_white = 0
    for row in rows[::4]:
        for x in range(0, width * bpp, bpp * 4):
            pixel = row[x:x + 3]
            colours.add(pixel)
            non_white += pixel != b"\xff\xff\xff"
    sampled = (height // 4) * (width // 4)
    assert 0.01 < non_white / sampled < 0.9, non_white / sampled  # text, badges, bars: not blank, not a solid block
    assert any(r > 180 and g < 90 and b < 90 for r, g, b in colours)  # the red badges of the critical jobs
