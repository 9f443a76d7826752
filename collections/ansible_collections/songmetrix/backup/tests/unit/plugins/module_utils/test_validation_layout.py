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
