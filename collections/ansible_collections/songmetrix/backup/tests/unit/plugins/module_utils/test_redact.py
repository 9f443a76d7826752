"""module_utils/redact.py: every pattern, the secret-name rule, data redaction, and scrub() on top of it."""

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils.module_base import scrub
from ansible_collections.songmetrix.backup.plugins.module_utils.redact import (
    MASK,
    is_secret_name,
    redact_data,
    redact_text,
    secret_values,
)
from ansible_collections.songmetrix.backup.plugins.plugin_utils import redact as plugin_redact

PW = "Zq8-long-secret-0042"
OTHER = "Xy7-other-value-9931"


# ---------------------------------------------------------------- URI credentials

@pytest.mark.parametrize("text, expected", [
    ("postgresql://backup:%s@db1:5432/orders" % PW, "postgresql://backup:%s@db1:5432/orders" % MASK),
    ("mongodb+srv://app:p%%40ss@cluster0/x", "mongodb+srv://app:%s@cluster0/x" % MASK),
    # path normalisation ate a slash: the form that leaked in playbook output
    ("postgresql:/backup:%s@db/orders" % PW, "postgresql:/backup:%s@db/orders" % MASK),
    ("/srv/spool/postgresql:/backup:%s@db/orders: No such file" % PW,
     "/srv/spool/postgresql:/backup:%s@db/orders: No such file" % MASK),
    ("file:///u:%s@x" % PW, "file:///u:%s@x" % MASK),
    # an unencoded "@" in the password is masked up to the host
    ("mysql://root:p@ss%s@db2/x" % PW, "mysql://root:%s@db2/x" % MASK),
    ("mysql://root:pa/ss@db2/x", "mysql://root:%s@db2/x" % MASK),
    ("two postgresql://a:%s@h1/d and mysql://b:%s@h2/e" % (PW, PW),
     "two postgresql://a:%s@h1/d and mysql://b:%s@h2/e" % (MASK, MASK)),
    ("https://example.com/path?x=1", "https://example.com/path?x=1"),
    ("postgresql://db1:5432/orders", "postgresql://db1:5432/orders"),
    ("scp backup@host:/srv/x", "scp backup@host:/srv/x"),
])
def test_uri_credentials(text, expected):
    assert redact_text(text) == expected


# ---------------------------------------------------------------- name=value pairs

@pytest.mark.parametrize("text, expected", [
    ("connect password=%s host=db" % PW, "connect password=%s host=db" % MASK),
    ("PGPASSWORD=%s pg_dump -h db" % PW, "PGPASSWORD=%s pg_dump -h db" % MASK),
    ("MYSQL_PWD=%s" % PW, "MYSQL_PWD=%s" % MASK),
    ("mysqldump --password=%s failed" % PW, "mysqldump --password=%s failed" % MASK),
    ("PGPASSWORD='a b c' pg_dump", "PGPASSWORD=%s pg_dump" % MASK),
    ('{"password": "a b c", "job": "x"}', '{"password": %s, "job": "x"}' % MASK),
    ("{'secret_key': 'abc', 'bucket': 'b'}", "{'secret_key': %s, 'bucket': 'b'}" % MASK),
    ("secret_key: abc123, region x", "secret_key: %s, region x" % MASK),
    ("password=ab,cd;ef host=db", "password=%s host=db" % MASK),
    ("Driver=x;Pwd=abc;Server=db", "Driver=x;Pwd=%s;Server=db" % MASK),
    ("api_token=abc&x=1", "api_token=%s&x=1" % MASK),
    ("X-Api-Key: abc123", "X-Api-Key: %s" % MASK),
    ("db.password: hunter22", "db.password: %s" % MASK),
    ("aws_access_key_id=x aws_secret_access_key=y", "aws_access_key_id=x aws_secret_access_key=%s" % MASK),
    ("private_key_passphrase = abc", "private_key_passphrase = %s" % MASK),
    ("session_token:abc", "session_token:%s" % MASK),
    ("key=abc123 rest", "key=%s rest" % MASK),
    # a value on the next line is not the value of "password:"
    ("Enter password:\nnext line", "Enter password:\nnext line"),
    ("password authentication failed for user backup", "password authentication failed for user backup"),
    # storage keys and file options stay readable
    ("manifest_key=prod/orders/2026.manifest.json", "manifest_key=prod/orders/2026.manifest.json"),
    ("key: prod/orders/2026-01-01.dump.zst", "key: prod/orders/2026-01-01.dump.zst"),
    ("storage_key=prod/x object_key: y", "storage_key=prod/x object_key: y"),
    ("password_file=/etc/pw token_file: /etc/t", "password_file=/etc/pw token_file: /etc/t"),
])
def test_key_value_pairs(text, expected):
    assert redact_text(text) == expected


# ---------------------------------------------------------------- Authorization, bearer, basic, key ids

@pytest.mark.parametrize("text, expected", [
    ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer %s" % MASK),
    ("authorization=Basic dXNlcjpwYXNz", "authorization=Basic %s" % MASK),
    ("Authorization: token ghp_abc", "Authorization: token %s" % MASK),
    ("Proxy-Authorization: xyz", "Proxy-Authorization: %s" % MASK),
    ('{"Authorization": "Bearer abc"}', '{"Authorization": "Bearer %s"}' % MASK),
    ("sent with bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "sent with bearer %s" % MASK),
    ("curl -H 'Basic dXNlcjpwYXNzd29yZA=='", "curl -H 'Basic %s'" % MASK),
    ("basic authentication failed", "basic authentication failed"),
    ("access key AKIAIOSFODNN7EXAMPLE denied", "access key %s denied" % MASK),
    ("ASIAIOSFODNN7EXAMPLE", MASK),
    ("AKIASHORT", "AKIASHORT"),
])
def test_auth_values_and_key_ids(text, expected):
    assert redact_text(text) == expected


# ---------------------------------------------------------------- known secrets

def test_known_secrets_longest_first_and_short_ones_only_through_patterns():
    text = "a %s b %s c on" % (PW, PW[:10])
    assert redact_text(text, [PW[:10], PW, "on", None, ""]) == "a %s b %s c on" % (MASK, MASK)
    assert redact_text("use abc here", ["abc"]) == "use abc here"
    assert redact_text("use abc here", ["abc"], min_length=3) == "use %s here" % MASK


def test_non_text():
    assert redact_text(None) is None
    assert redact_text(42) == "42"


# ---------------------------------------------------------------- secret names and data

@pytest.mark.parametrize("name, secret", [
    ("password", True), ("db_password", True), ("passwd", True), ("pwd", True), ("pass", True),
    ("db_pass", True), ("passphrase", True), ("private_key_passphrase", True), ("secret_key", True),
    ("session_token", True), ("api_key", True), ("apikey", True), ("api-key", True), ("access_key", True),
    ("key", True), ("ssh_key", True), ("encryption-key", True), ("client_secret", True), ("credential", True),
    ("identity", True), ("cookie", True), ("Authorization", True), ("basic_auth", True), ("private", True),
    # storage keys, identifiers, paths and flags are not
    ("manifest_key", False), ("artifact_key", False), ("storage_key", False), ("object_key", False),
    ("key_prefix", False), ("host_key", False), ("kms_key_id", False), ("sort_key", False), ("key_id", False),
    ("password_file", False), ("passphrase_file", False), ("identity_files", False), ("recipient_files", False),
    ("auth_database", False), ("author", False), ("bypass_cache", False), ("passive", False), ("job", False),
    ("_ansible_no_log", False), (3, False),
])
def test_is_secret_name(name, secret):
    assert is_secret_name(name) is secret


def test_redact_data():
    data = {
        "manifest_key": "prod/orders/2026.manifest.json",
        "storage": {"type": "s3", "key": "k", "secret_key": "abcd", "object_key": "prod/orders/x"},
        "source": {"engine": "postgresql", "password": PW, "uri": "mysql://root:%s@db2/x" % PW},
        "encryption": {"passphrase": 12345, "private_key_passphrase": True},
        "notes": ["PGPASSWORD=%s" % PW, ("tuple", PW)],
        "webhook": {"token": None, "api_key": ""},
        "size": 10, "ratio": 0.5, "ok": False,
        "host " + OTHER: "a known secret in a key",
    }
    out = redact_data(data, secrets=[PW, OTHER])
    assert out == {
        "manifest_key": "prod/orders/2026.manifest.json",
        "storage": {"type": "s3", "key": MASK, "secret_key": MASK, "object_key": "prod/orders/x"},
        "source": {"engine": "postgresql", "password": MASK, "uri": "mysql://root:%s@db2/x" % MASK},
        "encryption": {"passphrase": MASK, "private_key_passphrase": True},
        "notes": ["PGPASSWORD=%s" % MASK, ["tuple", MASK]],
        "webhook": {"token": None, "api_key": ""},
        "size": 10, "ratio": 0.5, "ok": False,
        "host " + MASK: "a known secret in a key",
    }
    assert data["source"]["password"] == PW  # the input is left alone


# ---------------------------------------------------------------- one implementation

def test_callback_uses_the_same_redaction():
    assert plugin_redact.redact_text is redact_text
    assert plugin_redact.redact_data is redact_data
    assert plugin_redact.is_secret_name is is_secret_name
    assert plugin_redact.MASK == MASK == "********"


def test_scrub_masks_the_path_normalised_connection_string():
    text = "pg_dump: error: could not open /var/spool/backup/postgresql:/backup:%s@db1/orders" % PW
    out = scrub(text)
    assert PW not in out
    assert out == "pg_dump: error: could not open /var/spool/backup/postgresql:/backup:%s@db1/orders" % MASK


def test_scrub_known_values_from_three_characters():
    assert scrub("login xyz failed for xyzzy", ["xyz"]) == "login %s failed for %szy" % (MASK, MASK)
    assert scrub("", ["abc"]) == "" and scrub(None) is None
    assert scrub("PGPASSWORD=s3cret pg_dump") == "PGPASSWORD=%s pg_dump" % MASK


def test_scrub_keeps_messages_that_mention_secret_options_readable():
    for text in ("backup.age is encrypted with an age passphrase; give decryption.passphrase",
                 "password authentication failed for user \"backup\"",
                 "storage.secret_key and storage.access_key are given together",
                 "uploaded key: prod/orders/2026-01-01.dump.zst (manifest_key=prod/orders/m.json)"):
        assert scrub(text) == text


# ---------------------------------------------------------------- connection strings and headers (issue 17)

@pytest.mark.parametrize("text, expected", [
    # Azure Storage: the account key; the account name stays
    ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=%s==;EndpointSuffix=core.windows.net" % PW,
     "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=%s;EndpointSuffix=core.windows.net" % MASK),
    # Service Bus / Event Hubs: the key, not its name
    ("Endpoint=sb://ns/;SharedAccessKeyName=Root;SharedAccessKey=%s=" % PW,
     "Endpoint=sb://ns/;SharedAccessKeyName=Root;SharedAccessKey=%s" % MASK),
    # SQL Server / ODBC: a ";" inside the password is part of it up to the next name=
    ("Server=tcp:db,1433;User ID=sa;Password=%s;x;Encrypt=true" % PW,
     "Server=tcp:db,1433;User ID=sa;Password=%s;Encrypt=true" % MASK),
    ("Driver={ODBC Driver 18};Server=db;UID=sa;PWD=%s" % PW, "Driver={ODBC Driver 18};Server=db;UID=sa;PWD=%s" % MASK),
    ("pwd=%s" % PW, "pwd=%s" % MASK),
    # SAS tokens: the signature (in a URL and in a connection string)
    ("https://acct.blob.core.windows.net/c?sv=2022-11-02&sp=rl&se=2026-01-01&sig=%s%%3D" % PW,
     "https://acct.blob.core.windows.net/c?sv=2022-11-02&sp=rl&se=2026-01-01&sig=%s" % MASK),
    ("BlobEndpoint=https://a/;SharedAccessSignature=sv=2020&sig=%s" % PW,
     "BlobEndpoint=https://a/;SharedAccessSignature=%s&sig=%s" % (MASK, MASK)),
    ("connection_string=%s" % PW, "connection_string=%s" % MASK),
    ("signing_key=%s key_id=k1" % PW, "signing_key=%s key_id=k1" % MASK),
    # storage keys and ids stay readable with "=" too
    ("manifest_key=prod/x host_key=ssh-ed25519 AAAA kms_key_id=alias/k sort_key=a",
     "manifest_key=prod/x host_key=ssh-ed25519 AAAA kms_key_id=alias/k sort_key=a"),
    # and a message about the option is no value
    ("source.supabase.connection_string: the parameter 'x' is not supported",
     "source.supabase.connection_string: the parameter 'x' is not supported"),
])
def test_connection_string_secrets(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("X-Signature: sha256=%s" % PW, "X-Signature: %s" % MASK),
    ("x-hub-signature-256:%s" % PW, "x-hub-signature-256:%s" % MASK),
    ("{'X-Signature': '%s', 'Content-Type': 'application/json'}" % PW,
     "{'X-Signature': '%s', 'Content-Type': 'application/json'}" % MASK),
    ('{"X-Custom-Auth": "%s"}' % PW, '{"X-Custom-Auth": "%s"}' % MASK),
    ("Cookie: session=%s" % PW, "Cookie: %s" % MASK),
    ("/srv/x-files: No such file or directory", "/srv/x-files: No such file or directory"),
])
def test_header_values(text, expected):
    assert redact_text(text) == expected


def test_redact_data_masks_every_header_value_and_connection_strings():
    data = {
        "headers": {"X-Signature": PW, "Authorization": "Bearer " + OTHER, "X-Request-Id": "r1", "Empty": ""},
        "supabase": {"connection_string": "postgresql://postgres.ref@db.example:5432/postgres"},
        "dsn": "x", "sig": "y",
    }
    assert redact_data(data) == {
        "headers": {"X-Signature": MASK, "Authorization": MASK, "X-Request-Id": MASK, "Empty": ""},
        "supabase": {"connection_string": MASK},
        "dsn": MASK, "sig": MASK,
    }


def test_secret_values_take_no_log_options_and_headers():
    params = {
        "job": "j",
        "source": {"engine": "supabase", "password": "pw-1",
                   "supabase": {"connection_string": "postgresql://u@h/db?x=1"}, "mongodb": {"uri": "mongodb://h"}},
        "webhooks": [{"url": "https://hooks.example/T0", "headers": {"X-Signature": "sig-1", "X-Id": "id-1"}}],
    }
    assert sorted(secret_values(params)) == sorted(
        ["pw-1", "postgresql://u@h/db?x=1", "mongodb://h", "sig-1", "id-1"])
    # other names: the webhook url is one, the MongoDB uri not (connection_string is named like a secret)
    assert sorted(secret_values(params, names={"url"})) == sorted(
        ["pw-1", "postgresql://u@h/db?x=1", "https://hooks.example/T0", "sig-1", "id-1"])


def test_scrub_masks_connection_string_fields_and_headers():
    text = ("sqlcmd: login failed: Server=db;UID=sa;PWD=%s; az: AccountKey=%s; curl -H 'X-Signature: %s'"
            % (PW, OTHER, PW))
    out = scrub(text)
    assert PW not in out and OTHER not in out
    assert out == ("sqlcmd: login failed: Server=db;UID=sa;PWD=%s; az: AccountKey=%s; curl -H 'X-Signature: %s'"
                   % (MASK, MASK, MASK))
