"""Signed records: manifests, lock objects and last-attempt records carry an HMAC-SHA256 of their bytes.

Why HMAC and not ed25519: hmac and hashlib are in every target's standard library (Python >= 3.9),
so a backup host needs no new package, and signing a manifest costs microseconds. The threat is a
storage-only attacker (a leaked bucket key, a shared SFTP account), who has no key at all; the key
sits in Ansible Vault beside the storage credentials, so whoever can read it owns the backups
already. What a key pair would add, a restore host that cannot forge, is not this fleet's setup:
the hosts that back up are the hosts that restore (docs/reliability.md, threat model).

A signed record is a JSON object with one extra field, ``signature``:
``{"algorithm": "hmac-sha256", "key_id": "<16 hex>", "value": "<64 hex>"}``. The MAC covers
``b"songmetrix.backup <kind>\\n"`` followed by the record's canonical bytes without that field
(``encode``), so a lock cannot pass for a manifest. A reader accepts the stored bytes only when they
are exactly the canonical encoding of what they parse to, signature included: what is checked is
byte for byte what is stored, and a file with duplicate keys or other spellings is refused.
The key id is derived from the key (an HMAC of a fixed label), so it names a key without
revealing it and needs no setting of its own.
"""

import hashlib
import hmac
import json

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

ALGORITHM = "hmac-sha256"
FIELD = "signature"
MIN_KEY_BYTES = 32
# Verdicts: a reader's view of one record.
AUTHENTICATED = "authenticated"  # signed with a key this run knows, bytes and MAC checked
UNAUTHENTICATED = "unauthenticated"  # no signature, or no key to check it with
INVALID = "invalid"  # a signature that does not check out (tampered, unknown key, not canonical)


def key_id(key):
    """The public name of a key: 16 hex digits that do not reveal it."""
    return hmac.new(_key_bytes(key), b"songmetrix.backup key id", hashlib.sha256).hexdigest()[:16]


def _key_bytes(key):
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)


def _mac(key, kind, payload):
    return hmac.new(_key_bytes(key), b"songmetrix.backup " + kind.encode("ascii") + b"\n" + payload,
                    hashlib.sha256).hexdigest()


class Verdict(object):
    """How a record read back checked out: ``status`` (one of the three above), the ``key_id`` it names
    (None when unsigned) and a ``problem`` sentence for anything but authenticated."""

    def __init__(self, status, key_id=None, problem=None):
        self.status = status
        self.key_id = key_id
        self.problem = problem

    @property
    def ok(self):
        return self.status == AUTHENTICATED

    def as_dict(self):
        return {"status": self.status, "key_id": self.key_id, "problem": self.problem}


def _no_duplicates(pairs):
    record = {}
    for name, value in pairs:
        if name in record:
            raise ValueError("duplicate key %r" % name)
        record[name] = value
    return record


def parse(data):
    """The JSON object in ``data``; ValueError for bad JSON, duplicate keys or anything but an object."""
    record = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


class Keyring(object):
    """The ``signing`` option of a module: the key that signs (and checks), and older keys that only check.

    ``Keyring(None)`` is a job without a key: it signs nothing and calls every record unauthenticated.
    """

    def __init__(self, params):
        params = params or {}
        self.key = params.get("key") or None
        older = [k for k in params.get("verify_keys") or [] if k]
        if older and not self.key:
            raise ValidationError("signing.verify_keys needs signing.key")
        for name, value in [("signing.key", self.key)] + [("signing.verify_keys", k) for k in older]:
            if value is not None and len(_key_bytes(value)) < MIN_KEY_BYTES:
                raise ValidationError("%s must be at least %d bytes long (make one with: openssl rand -base64 32)"
                                      % (name, MIN_KEY_BYTES))
        self.key_id = key_id(self.key) if self.key else None
        self.keys = dict((key_id(k), k) for k in ([self.key] if self.key else []) + older)

    @property
    def enabled(self):
        return self.key is not None

    def describe(self):
        """What a result may say about the keys: their ids, never the keys."""
        return {"key_id": self.key_id, "verify_key_ids": sorted(i for i in self.keys if i != self.key_id)}

    def encode(self, kind, record, encode):
        """The bytes to store for ``record``: ``encode(record)``, with a signature when this job has a key."""
        record = dict(record)
        record.pop(FIELD, None)
        if not self.enabled:
            return encode(record)
        record[FIELD] = {"algorithm": ALGORITHM, "key_id": self.key_id,
                         "value": _mac(self.key, kind, encode(record))}
        return encode(record)

    def check(self, kind, data, encode, what):
        """(record, Verdict) for stored bytes; ValueError when they are not a JSON object at all."""
        record = parse(data)
        signature = record.get(FIELD)
        if signature is None:
            if self.enabled:
                return record, Verdict(UNAUTHENTICATED, None, "%s is not signed; this job signs with key %s"
                                       % (what, self.key_id))
            return record, Verdict(UNAUTHENTICATED)
        named = signature.get("key_id") if isinstance(signature, dict) else None
        if not self.enabled:
            return record, Verdict(UNAUTHENTICATED, named if isinstance(named, str) else None)
        if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM \
                or not isinstance(named, str) or not isinstance(signature.get("value"), str):
            return record, Verdict(INVALID, None, "%s has a malformed signature" % what)
        key = self.keys.get(named)
        if key is None:
            return record, Verdict(INVALID, named, "%s is signed with key %s, which this job does not have (it has %s)"
                                   % (what, named, ", ".join(sorted(self.keys))))
        if encode(record) != data:
            return record, Verdict(INVALID, named, "%s is not stored in its canonical form: its bytes are not the ones "
                                   "that were signed" % what)
        unsigned = dict(record)
        unsigned.pop(FIELD)
        if not hmac.compare_digest(_mac(key, kind, encode(unsigned)), signature["value"]):
            return record, Verdict(INVALID, named, "%s has a bad signature for key %s: it was changed after it was "
                                   "signed, or signed by someone else" % (what, named))
        return record, Verdict(AUTHENTICATED, named)
