"""Helpers of the MongoDB engine tests: the fake mongodump/mongorestore (tests/fakes) on PATH."""

import json
import os
import subprocess

try:
    from engine_helpers import REPO, decompress_cmd
except ImportError:  # imported as tests.integration.mongodb_fakes (from tests/security)
    from tests.integration.engine_helpers import REPO, decompress_cmd

FAKES = os.path.join(REPO, "tests", "fakes")
MONGODUMP = os.path.join(FAKES, "mongodump")
MONGORESTORE = os.path.join(FAKES, "mongorestore")
PASSWORD = "s3cr3t:p@ss/wörd"  # needs percent-encoding in a URI
PASSWORD_IN_URI = "s3cr3t%3Ap%40ss%2Fw%C3%B6rd"
SHOP = {"shop": {"items": 3, "users": 5, "empty": 0}, "other": {"x": 1}}


class FakeMongo(object):
    """The environment of one test: FAKE_LOG, the fake server's data and password, PATH with the fakes first."""

    def __init__(self, tmp_path, data=None, password=PASSWORD):
        self.log = str(tmp_path / "fake-log.jsonl")
        self.restored = str(tmp_path / "restored.archive")
        self.data = SHOP if data is None else data
        self.password = password

    def env(self, **extra):
        env = {
            "PATH": FAKES + os.pathsep + os.environ.get("PATH", ""),
            "FAKE_LOG": self.log,
            "FAKE_MONGO_DATA": json.dumps(self.data),
            "FAKE_MONGO_PASSWORD": self.password,
            "FAKE_RESTORE_OUT": self.restored,
        }
        env.update(extra)
        return env

    def entries(self, tool=None):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as handle:
            found = [json.loads(line) for line in handle if line.strip()]
        return [entry for entry in found if tool is None or entry["tool"] == tool]

    def restored_namespaces(self):
        """The namespaces the fake mongorestore restored last (after --nsInclude and --nsFrom/--nsTo)."""
        path = self.restored + ".namespaces.json"
        if not os.path.exists(path):
            return None
        with open(path) as handle:
            return json.load(handle)

    def archive(self, *args, **env):
        """What the fake mongodump writes for ``args`` (it is deterministic), for byte comparisons."""
        config = os.path.join(os.path.dirname(self.log), "direct-config.yaml")
        with open(config, "w") as handle:
            handle.write('uri: "mongodb://backup:%s@127.0.0.1:27018/"\n' % PASSWORD_IN_URI)
        run_env = dict(os.environ, **self.env(FAKE_LOG=os.devnull, **env))
        return subprocess.run([MONGODUMP, "--config=%s" % config, "--archive"] + list(args), env=run_env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout


def source(**extra):
    params = dict(engine="mongodb", host="127.0.0.1", port=27018, user="backup", password=PASSWORD, database="shop")
    params.update(extra)
    return params


def target(**extra):
    params = dict(engine="mongodb", host="127.0.0.1", port=27018, user="backup", password=PASSWORD,
                  database="shop")
    params.update(extra)
    return params


def decompressed(path):
    return subprocess.run(decompress_cmd(path), stdout=subprocess.PIPE, check=True).stdout


def assert_no_secret(fake, result):
    """The password (plain or percent-encoded) is in no argv, no cmdline and not in the module result."""
    text = json.dumps(result)
    for secret in (PASSWORD, PASSWORD_IN_URI):
        assert secret not in text
        for entry in fake.entries():
            assert not any(secret in arg for arg in entry["argv"] + entry["cmdline"]), entry["argv"]


def assert_configs_gone(fake):
    """Every config file a fake saw was mode 0600 while it ran and is gone now."""
    entries = fake.entries()
    assert entries
    for entry in entries:
        assert entry["config_mode"] == "0o600", entry
        assert not os.path.exists(entry["config_path"]), entry["config_path"]
