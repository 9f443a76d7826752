import datetime

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import layout, validation
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

STARTED = datetime.datetime(2026, 3, 7, 2, 5, 9, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("name", ["db", "billing-db", "a.b_c-1", "x" * 100])
def test_job_name_accepts(name):
    assert validation.job_name(name) == name


@pytest.mark.parametrize("name", ["", "-lead", "../up", "a/b", "sp ace", "semi;colon", "x" * 101, "new\nline", "é"])
def test_job_name_refuses(name):
    with pytest.raises(ValidationError, match="job name"):
        validation.job_name(name)


@pytest.mark.parametrize("prefix,expected", [(None, ""), ("", ""), ("/a/b/", "a/b"), ("prod", "prod")])
def test_prefix_normalised(prefix, expected):
    assert validation.storage_prefix(prefix) == expected


@pytest.mark.parametrize("prefix", ["a/../b", "..", "a/./b", "a b", "a/$(x)"])
def test_prefix_refused(prefix):
    with pytest.raises(ValidationError, match="storage prefix"):
        validation.storage_prefix(prefix)


def test_timezone():
    assert validation.timezone_name("Europe/Berlin") == "Europe/Berlin"
    with pytest.raises(ValidationError, match="unknown timezone"):
        validation.timezone_name("Mars/Olympus")


def test_layout_scheduled_and_manual():
    stem = layout.backup_stem("prod/eu", "db", "scheduled", STARTED)
    assert stem == "prod/eu/db/2026/03/07/db-20260307T020509Z"
    assert layout.artifact_key(stem, "dump.zst") == stem + ".dump.zst"
    assert layout.manifest_key(stem) == stem + ".manifest.json"
    assert layout.backup_stem("", "db", "manual", STARTED) == "db/manual/2026/03/07/db-20260307T020509Z"
    assert layout.iso_utc(STARTED) == "2026-03-07T02:05:09Z"


def test_parse_manifest_key_round_trips_backup_stem():
    for kind in ("scheduled", "manual"):
        stem = layout.backup_stem("prod/eu", "db.main", kind, STARTED)
        parsed = layout.parse_manifest_key(layout.manifest_key(stem), "prod/eu")
        assert parsed == {"job": "db.main", "kind": kind, "started": STARTED.replace(microsecond=0), "stem": stem}


@pytest.mark.parametrize("key", [
    "prod/db/2026/03/07/db-20260307T020509Z.dump.zst",  # not a manifest
    "other/db/2026/03/07/db-20260307T020509Z.manifest.json",  # another prefix
    "prod/db/2026/03/07/other-20260307T020509Z.manifest.json",  # file name names another job
    "prod/db/2026/03/08/db-20260307T020509Z.manifest.json",  # date folder disagrees with the stamp
    "prod/db/extra/2026/03/07/db-20260307T020509Z.manifest.json",
    "prod/db/2026/13/07/db-20261307T020509Z.manifest.json",  # no month 13
    "prod/../2026/03/07/..-20260307T020509Z.manifest.json",
])
def test_parse_manifest_key_refuses_what_is_not_our_layout(key):
    assert layout.parse_manifest_key(key, "prod") is None


def test_job_folder():
    assert layout.job_folder("", None) == ""
    assert layout.job_folder("prod", None) == "prod/"
    assert layout.job_folder("prod", "db") == "prod/db/"
    assert layout.job_folder("", "db") == "db/"


@pytest.mark.parametrize("text,end_of_day,expected", [
    ("2026-11-23", False, datetime.datetime(2026, 11, 23, tzinfo=datetime.timezone.utc)),
    ("2026-11-23", True, datetime.datetime(2026, 11, 23, 23, 59, 59, tzinfo=datetime.timezone.utc)),
    ("2026-11-23T02:00:00Z", False, datetime.datetime(2026, 11, 23, 2, tzinfo=datetime.timezone.utc)),
    ("2026-11-23T03:00:00+01:00", False, datetime.datetime(2026, 11, 23, 2, tzinfo=datetime.timezone.utc)),
    ("2026-11-23T02:00:00", False, datetime.datetime(2026, 11, 23, 2, tzinfo=datetime.timezone.utc)),
])
def test_timestamp(text, end_of_day, expected):
    assert validation.timestamp("since", text, end_of_day) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "23.11.2026", "2026-11-23T25:00:00Z"])
def test_timestamp_refuses(text):
    with pytest.raises(ValidationError, match="not an ISO 8601"):
        validation.timestamp("until", text)


@pytest.mark.parametrize("key, job", [
    ("db/2026/11/23/db-20261123T020000Z.manifest.json", "db"),
    ("site/a/db/manual/2026/11/23/db-20261123T020000Z.manifest.json", "db"),
    ("db/2026/11/23/other-20261123T020000Z.manifest.json", None),  # folder and file disagree
    ("db/2026/11/23/db-20261123T020000Z.sqlite3.zst", None),
])
def test_job_of_manifest_key_under_any_prefix(key, job):
    assert layout.job_of_manifest_key(key) == job
