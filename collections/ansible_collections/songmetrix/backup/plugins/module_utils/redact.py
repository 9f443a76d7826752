"""Redaction of text and structures that leave the host: notifications, pings, event logs.

Nothing here knows the secrets of a job. It masks what looks like a credential (URIs with
user:password@, ``password=...`` pairs, bearer tokens, values under keys named like a secret),
plus any known secret values the caller passes (the module's no_log values), and reduces URLs
that carry tokens in their path to ``scheme://host/…``.
"""

import re

MASK = "********"

# URIs with user:password@ (the user is kept, the password masked).
_URI_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@\s]*@")
# key=value / key: value pairs whose key names a secret (word boundary, so manifest_key=... is kept);
# a bare "key" only with "=", so "key: prod/job/..." (a storage key) stays readable. PGPASSWORD=, MYSQL_PWD=
# and the like match through the name prefix.
_KEY_VALUE_SECRET = re.compile(
    r"(?i)\b([A-Za-z0-9_]*?(?:password|passwd|pwd|secret|token|passphrase|api_?key|access_key|private_key)"
    r"|key(?=\s*=))(\"?\s*[=:]\s*\"?)([^\s\"']+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}")
# AWS access key ids and the like: fixed prefixes that are never anything else.
_KEY_IDS = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")

# Dict keys whose values are masked whatever they hold.
_SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|passphrase|credential|private|apikey|api_key|"
                          r"access_key|auth|cookie|^pwd$|^pass$)")
# Key-named fields that are storage keys, not key material.
_NOT_SECRET_KEYS = frozenset(["manifest_key", "artifact_key", "storage_key", "object_key", "key_prefix"])


def is_secret_name(name):
    """Whether a dict key names a credential (password, secret, token, passphrase, key, ...)."""
    text = str(name)
    lowered = text.lower()
    if lowered in _NOT_SECRET_KEYS:
        return False
    if _SECRET_NAME.search(text):
        return True
    return lowered == "key" or lowered.endswith("_key") or lowered.endswith("-key")


def redact_text(text, secrets=()):
    """``text`` with known secret values and credential-looking substrings masked."""
    if text is None:
        return None
    if not isinstance(text, str):
        text = str(text)
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted((str(s) for s in secrets if s), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _URI_CREDENTIALS.sub(r"\g<scheme>\g<user>:" + MASK + "@", text)
    text = _KEY_VALUE_SECRET.sub(r"\1\2" + MASK, text)
    text = _BEARER.sub(r"\1\2" + MASK, text)
    return _KEY_IDS.sub(MASK, text)


def redact_data(value, secrets=()):
    """A copy of a JSON-like structure with secret-named keys masked and every string redacted."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = redact_text(str(key), secrets)
            if is_secret_name(key) and item not in (None, "", [], {}):
                out[name] = MASK
            else:
                out[name] = redact_data(item, secrets)
        return out
    if isinstance(value, (list, tuple)):
        return [redact_data(item, secrets) for item in value]
    if isinstance(value, str):
        return redact_text(value, secrets)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact_text(str(value), secrets)


def redact_url(url):
    """``scheme://host[:port]/…``: what may be shown of a URL whose path or query is a secret."""
    text = str(url or "")
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://([^/?#]*)(.*)$", text, re.S)
    if not match:
        return "<invalid url>"
    scheme, netloc, rest = match.groups()
    host = netloc.rsplit("@", 1)[-1]
    return "%s://%s%s" % (scheme.lower(), host, "/…" if rest not in ("", "/") else "")


def tail_utf8(text, max_bytes, marker="[... truncated ...]\n"):
    """The end of ``text`` in at most ``max_bytes`` UTF-8 bytes, cut at a character boundary.

    When text is cut, ``marker`` is put in front (within the limit) and the partial first line
    is dropped, so the excerpt starts at a line.
    """
    data = (text or "").encode("utf-8")
    if len(data) <= max_bytes:
        return data
    head = marker.encode("utf-8")
    budget = max(0, max_bytes - len(head))
    cut = len(data) - budget
    while cut < len(data) and (data[cut] & 0xC0) == 0x80:  # a continuation byte: move to the next character
        cut += 1
    piece = data[cut:]
    newline = piece.find(b"\n")
    if 0 <= newline < len(piece) - 1 and newline < 200:
        piece = piece[newline + 1:]
    return (head + piece) if len(head) <= max_bytes else piece


def tail_chars(text, max_chars, marker="… "):
    """The end of ``text`` in at most ``max_chars`` characters (chat messages keep the error's end)."""
    text = text or ""
    if len(text) <= max_chars:
        return text
    return marker + text[len(text) - max_chars + len(marker):]
