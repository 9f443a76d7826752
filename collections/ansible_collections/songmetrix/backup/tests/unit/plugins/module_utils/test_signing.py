"""Signed records (module_utils/signing.py): what passes and what does not."""

import json

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import manifest, signing
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

KEY = "k" * 32
OLD_KEY = "o" * 32
RECORD = {"job": "db", "format": "custom", "sha256": "ab" * 32, "started": "2026-11-23T02:00:00Z"}


def signed(record=None, key=KEY, kind="manifest"):
    return signing.Keyring({"key": key}).encode(kind, record or RECORD, manifest.encode)


def check(data, key=KEY, verify_keys=None, kind="manifest"):
    keyring = signing.Keyring({"key": key, "verify_keys": verify_keys} if key else None)
    return keyring.check(kind, data, manifest.encode, "manifest m")


def test_signed_record_checks_and_names_its_key():
    data = signed()
    record, verdict = check(data)
    assert verdict.ok and verdict.key_id == signing.key_id(KEY)
    assert record["signature"]["algorithm"] == "hmac-sha256" and KEY not in data.decode()
    assert {k: v for k, v in record.items() if k != "signature"} == RECORD


def test_key_id_does_not_reveal_the_key_and_differs_per_key():
    assert signing.key_id(KEY) != signing.key_id(OLD_KEY)
    assert len(signing.key_id(KEY)) == 16 and KEY[:8] not in signing.key_id(KEY)


@pytest.mark.parametrize("change", [
    lambda r: r.update(format="plain"),          # the loader switched
    lambda r: r.update(extra="x"),               # a field added
    lambda r: r.pop("sha256"),                   # a field removed
    lambda r: r["signature"].update(value="0" * 64),
])
def test_any_change_after_signing_is_invalid(change):
    record = json.loads(signed())
    change(record)
    _record, verdict = check(manifest.encode(record))
    assert verdict.status == signing.INVALID and "bad signature" in verdict.problem


def test_bytes_other_than_the_canonical_ones_are_invalid():
    record = json.loads(signed())
    same_meaning = json.dumps(record).encode()  # no indentation: not the bytes that were signed
    _record, verdict = check(same_meaning)
    assert verdict.status == signing.INVALID and "canonical" in verdict.problem


def test_duplicate_keys_are_refused():
    text = signed().decode().replace('"format": "custom",', '"format": "custom",\n  "format": "plain",')
    with pytest.raises(ValueError, match="duplicate key 'format'"):
        check(text.encode())


def test_unsigned_record_with_a_key_is_unauthenticated_naming_the_key():
    _record, verdict = check(manifest.encode(RECORD))
    assert verdict.status == signing.UNAUTHENTICATED and signing.key_id(KEY) in verdict.problem


def test_without_a_key_everything_is_unauthenticated_and_nothing_is_signed():
    keyring = signing.Keyring(None)
    assert keyring.encode("manifest", RECORD, manifest.encode) == manifest.encode(RECORD)
    _record, verdict = check(signed(), key=None)
    assert verdict.status == signing.UNAUTHENTICATED and verdict.key_id == signing.key_id(KEY)
    assert verdict.problem is None


def test_unknown_key_is_invalid_and_an_older_key_still_checks():
    data = signed(key=OLD_KEY)
    _record, verdict = check(data)
    assert verdict.status == signing.INVALID and signing.key_id(OLD_KEY) in verdict.problem
    _record, verdict = check(data, verify_keys=[OLD_KEY])
    assert verdict.ok and verdict.key_id == signing.key_id(OLD_KEY)


def test_a_lock_signature_does_not_pass_for_a_manifest():
    _record, verdict = check(signed(kind="lock"))
    assert verdict.status == signing.INVALID


@pytest.mark.parametrize("params, message", [
    ({"key": "short"}, "at least 32 bytes"),
    ({"key": KEY, "verify_keys": ["short"]}, "signing.verify_keys must be at least"),
])
def test_weak_keys_are_refused(params, message):
    with pytest.raises(ValidationError, match=message):
        signing.Keyring(params)


def test_describe_names_ids_only():
    described = signing.Keyring({"key": KEY, "verify_keys": [OLD_KEY]}).describe()
    assert described == {"key_id": signing.key_id(KEY), "verify_key_ids": [signing.key_id(OLD_KEY)]}
