# Copyright: songmetrix.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret redaction for controller-side plugins (the email_report callback).

Three layers, applied to everything a report shows:

- known secret values (collected from task arguments with collect_secrets()) are replaced
  wherever they occur, longest first;
- credentials inside URIs: ``scheme://user:pass@host`` becomes ``scheme://user:***@host``;
- ``name=value`` / ``name: value`` pairs whose name looks like a secret (password, token, ...).

redact() walks dicts and lists: the value of any key that looks like a secret is masked whole.
"""

from __future__ import annotations

import re

MASK = "********"
URI_MASK = "***"

# Dict keys whose values are secrets. "key" counts (an API or encryption key), except the
# names below that this collection uses for object keys and public identifiers.
_SECRET_KEY = re.compile(
    r"(?i)(pass(word|wd|phrase)?|pwd|secret|token|credential|identity|api[_-]?key|access[_-]?key"
    r"|private[_-]?key|(^|[_-])key$|authorization|cookie)"
)
_NOT_SECRET_KEYS = frozenset({
    "manifest_key", "host_key", "kms_key_id", "object_key", "storage_key", "sort_key", "key_id",
    "password_file", "passphrase_file", "identity_files", "recipient_files",
})

# Option names that this collection's modules declare no_log (module_utils/specs.py); their
# values are secrets whatever the name looks like (a MongoDB uri, an age identity).
NO_LOG_OPTION_NAMES = frozenset({
    "password", "uri", "access_key", "secret_key", "session_token", "private_key_passphrase",
    "passphrase", "identity", "url",
})

# "scheme:/user:pass@" too: a connection string that went through path normalisation lost a slash.
_URI_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*:/{1,3})(?P<user>[^:/@\s]*):[^@\s]*@")
_PAIR_SECRET = re.compile(
    r"(?i)(?P<name>\b[\w.-]*(?:password|passwd|pwd|secret|token|passphrase|api[_-]?key|access[_-]?key"
    r"|secret[_-]?key|private[_-]?key))(?P<sep>\s*[=:]\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
)
_AUTH_HEADER = re.compile(
    r"(?i)(?P<name>\bauthorization\s*[:=]\s*)(?P<scheme>(?:bearer|basic|token)\s+)?(?P<value>\S+)"
)

# Shorter values would mask ordinary words ("on", "dev"); such secrets only go through the patterns.
MIN_SECRET_LENGTH = 4


def is_secret_key(name) -> bool:
    """True when a dict key names a secret (password, token, api_key, ...)."""
    if not isinstance(name, str):
        return False
    lowered = name.lower()
    if lowered in _NOT_SECRET_KEYS or lowered.startswith("_ansible_"):
        return False
    return bool(_SECRET_KEY.search(lowered))


def redact_text(text, secrets=()) -> str:
    """``text`` with known secret values and credential-looking substrings masked."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    for secret in sorted({s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH},
                         key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URI_CREDENTIALS.sub(lambda m: "%s%s:%s@" % (m.group("scheme"), m.group("user"), URI_MASK), text)
    text = _PAIR_SECRET.sub(lambda m: m.group("name") + m.group("sep") + MASK, text)
    return _AUTH_HEADER.sub(lambda m: m.group("name") + (m.group("scheme") or "") + MASK, text)


def redact(value, secrets=()):
    """A copy of ``value`` (dicts, lists, strings, scalars) with secrets masked."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if is_secret_key(key) and item not in (None, "", [], {}) and not isinstance(item, bool):
                out[key] = MASK
            else:
                out[key] = redact(item, secrets)
        return out
    if isinstance(value, (list, tuple)):
        return [redact(item, secrets) for item in value]
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value


def collect_secrets(args, extra_names=NO_LOG_OPTION_NAMES) -> set:
    """The string values in ``args`` (task arguments, nested) stored under secret-looking keys."""
    found = set()

    def take(value):
        if isinstance(value, str):
            if len(value) >= MIN_SECRET_LENGTH:
                found.add(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                take(item)
        elif isinstance(value, dict):
            for item in value.values():
                take(item)

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and key.startswith("_ansible_"):
                    continue
                if is_secret_key(key) or (isinstance(key, str) and key.lower() in extra_names):
                    take(item)
                else:
                    walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(args)
    return found
