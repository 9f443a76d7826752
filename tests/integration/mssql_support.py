"""The fake sqlcmd (tests/fakes/sqlcmd) set up for one test, and what it recorded."""

import hashlib
import json
import os
import stat
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
FAKE = os.path.join(REPO, "tests", "fakes", "sqlcmd")
PASSWORD = "Pa55'w]rd;DROP"
SERVER_DIR = "/var/opt/mssql/o'brien backups"


class FakeSqlcmd(object):
    def __init__(self, tmp_path):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        # The fake runs with the tests' Python (it needs boto3 for url mode).
        wrapper = self.bin / "sqlcmd"
        wrapper.write_text('#!/bin/sh\nexec "%s" "%s" "$@"\n' % (sys.executable, FAKE))
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        self.path = str(wrapper)
        self.log = tmp_path / "sqlcmd.log"
        self.share = tmp_path / "share"
        self.share.mkdir()
        self.env = {
            "PATH": "%s:%s" % (self.bin, os.environ.get("PATH", "")),
            "FAKE_LOG": str(self.log),
            "FAKE_DATABASES": json.dumps(["shop"]),
            "FAKE_PATH_MAP": json.dumps({SERVER_DIR: str(self.share)}),
            "FAKE_PASSWORD": PASSWORD,
        }

    def set(self, **values):
        for key, value in values.items():
            self.env[key] = json.dumps(value) if isinstance(value, (list, dict)) else value

    def calls(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def statements(self):
        """The calls that ran T-SQL (not the --version / -? probes)."""
        return [call for call in self.calls() if call.get("sql") is not None]

    def share_files(self):
        return sorted(os.listdir(self.share))

    def events(self, name):
        return [event for call in self.calls() for event in call["events"] if name in event]


def mssql_source(database="shop", **mssql):
    opts = {"server_dir": SERVER_DIR}
    opts.update(mssql)
    return {"engine": "mssql", "host": "db.example", "port": 1433, "user": "sa", "password": PASSWORD,
            "database": database, "mssql": opts}


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assert_no_secret(secret, fake, *texts):
    """``secret`` is nowhere in any sqlcmd argv or /proc cmdline, nor in the given texts."""
    for call in fake.calls():
        assert not any(secret in arg for arg in call["argv"]), call["argv"]
        assert not any(secret in arg for arg in call.get("cmdline") or []), call["cmdline"]
    for text in texts:
        assert secret not in text
