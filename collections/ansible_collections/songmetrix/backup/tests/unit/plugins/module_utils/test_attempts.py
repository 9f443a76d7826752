"""The last-attempt record keeps the error of a failed run, but never a secret of the run's options."""

import datetime
import json

from ansible_collections.songmetrix.backup.plugins.module_utils.attempts import AttemptLog, read_last
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.redact import secret_values
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_local import LocalStorage

NOW = datetime.datetime(2026, 12, 7, 2, 0, tzinfo=datetime.timezone.utc)
PARAMS = {
    "job": "db",
    "source": {"engine": "postgresql", "user": "backup", "password": "pw-7f3a9c"},
    "storage": {"type": "s3", "access_key": "AKIDEXAMPLE", "secret_key": "sk-91be22", "bucket": "b"},
    "encryption": {"method": "gpg", "passphrase": "pp-4d1e0b", "recipients": []},
}


def test_secret_values_are_those_under_secret_names_at_any_depth():
    assert sorted(secret_values(PARAMS)) == ["AKIDEXAMPLE", "pp-4d1e0b", "pw-7f3a9c", "sk-91be22"]


def test_a_failure_text_carrying_a_secret_is_recorded_masked(tmp_path):
    storage = LocalStorage(str(tmp_path))
    storage.put_small("db/2026/12/06/db-20261206T020000Z.manifest.json", b"{}")  # history: the record is written
    log = AttemptLog(storage, "", "db", NOW, secret_values(PARAMS))
    log.failed(NOW, BackupError("FATAL: password pw-7f3a9c rejected; gpg: bad passphrase pp-4d1e0b at db.example"))
    record = read_last(storage, "", "db")
    assert record["status"] == "failed"
    assert record["error"] == "FATAL: password ******** rejected; gpg: bad passphrase ******** at db.example"
    text = (tmp_path / "db" / "last-attempt.json").read_text()
    assert "pw-7f3a9c" not in text and "pp-4d1e0b" not in text and json.loads(text)["job"] == "db"
