"""Secret redaction for everything that leaves a host or the controller: module results, notifications,
pings, event logs and the email report. The one implementation: module_base.scrub (every module's tool
output), the notify module and the email_report callback (through plugin_utils/redact.py) all use it.

Nothing here knows the secrets of a job. It masks what looks like a credential (URIs with
user:password@, ``password=...`` pairs, the secret fields of connection strings such as ``AccountKey=``,
``Pwd=`` and a SAS token's ``sig=``, Authorization / bearer / basic values, ``X-...`` header values, AWS
access key ids, values under keys named like a secret, every value of a ``headers`` dict), plus any known
secret values the caller passes (a module's no_log values, the secrets the callback collected from task
arguments), and reduces URLs that carry tokens in their path to ``scheme://host/…``. Every mask is
``********``, as Ansible's own.
"""

import re

MASK = "********"

# Known secret values shorter than this are not replaced in free text: they would mask ordinary words
# ("on", "dev"); such secrets only go through the patterns. module_base.scrub passes 3 (a module's own
# no_log values, on tool output).
MIN_SECRET_LENGTH = 4

# URIs with user:password@ (the user is kept, the password masked). One to three slashes: a connection
# string that went through path normalisation ("postgresql:/backup:pw@db") lost one. The password runs
# to the last "@" before the path (an unencoded "@" in it), else to the first "@" (a "/" in it).
_URI_CREDENTIALS = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*:/{1,3})(?P<user>[^:/@\s]*):(?:[^\s/]*@|[^@\s]*@)"
)
# name=value / name: value pairs whose name ends with a secret word (PGPASSWORD=, db.password:, x-api-key:,
# "password": "..."); a word boundary first, so manifest_key=... is kept. With "=" only (a connection string's
# fields, a query string): any name ending in "key" (AccountKey=, SharedAccessKey=, key=) except the storage keys
# and ids of _NOT_SECRET_NAMES, a SAS token's sig=, SharedAccessSignature= and connection_string=; so "key: prod/
# job/..." (a storage key) and "connection_string: not a valid URI" stay readable. A quoted value is masked
# whole; an unquoted one ends at whitespace, or at a "," ";" "&" followed by whitespace, the end or the next
# name= ("a, b", "x;Server=", "t&x=1"), so "password=ab,cd" is masked whole.
_KEY_VALUE_SECRET = re.compile(
    r"(?i)(?P<name>\b[\w.-]*(?:password|passwd|pwd|secret|token|passphrase|api[_-]?key|access[_-]?key"
    r"|secret[_-]?key|private[_-]?key)"
    r"|(?:\b[\w.-]*key|\bsig|\b[\w.-]*sharedaccesssignature|\b[\w.-]*connection[_-]?string)(?=[\"']?[ \t]*=))"
    r"(?P<sep>[\"']?[ \t]*[=:][ \t]*)"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|(?:[^\s,;&\"']|[,;&](?!\s|$|[\w.-]+=)|[\"'](?=[^\s,;&\"']))+)"
)
# Authorization headers, whatever the scheme: "Authorization: Bearer x", "authorization=Basic x".
_AUTH_HEADER = re.compile(
    r"(?i)(?P<name>\bauthorization[\"']?[ \t]*[:=][ \t]*[\"']?)(?P<scheme>(?:bearer|basic|token)[ \t]+)?"
    r"(?P<value>[^\s\"']+)"
)
# Other header lines: the value of every "X-...: value" header (X-Signature, X-Hub-Signature-256, X-Api-Token,
# custom auth headers) and of Cookie / Set-Cookie, quoted or not ("{'X-Signature': 'abc'}"). The name starts a
# line or follows a space, quote, brace, bracket or comma ("/tmp/x-files: No such file" is no header).
_HEADER_LINE = re.compile(
    r"(?im)(?P<name>(?<![^\s\"'{(\[,])(?:x-[\w-]+|(?:set-)?cookie)[\"']?[ \t]*:[ \t]*[\"']?)(?P<value>[^\s\"']+)"
)
# "Bearer <token>" / "Basic <base64>" anywhere; the token must look like one (a digit, one of ._~+/= or an
# inner capital), so "basic authentication" stays readable.
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer|basic)(?P<space>[ \t]+)(?P<value>[A-Za-z0-9._~+/=-]{8,})")
# AWS access key ids and the like: fixed prefixes that are never anything else.
_KEY_IDS = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")

# Dict keys whose values are masked whatever they hold (matched on the lower-cased name), plus "key",
# "*_key" and "*-key". "auth" only as a whole word ("basic_auth"), so auth_database stays readable.
_SECRET_NAME = re.compile(
    r"password|passwd|passphrase|pwd|secret|token|credential|identity|cookie|private|apikey|api[_-]?key"
    r"|access[_-]?key|authori[sz]ation|(?:^|[_-])auth$|(?:^|[_-])pass(?:$|[_-])|pass$"
    r"|connection[_-]?string|(?:^|[_-])conn[_-]?str$|(?:^|[_-])dsn$|^sig$|signature$"
)
# Dict keys whose values are HTTP headers: every value is a secret (X-Signature, Authorization, an API key under
# any name); the header names stay readable.
_HEADER_CONTAINERS = frozenset(["headers", "http_headers"])
# Key-named fields that are storage keys, identifiers or paths, not key material.
_NOT_SECRET_NAMES = frozenset([
    "manifest_key", "artifact_key", "storage_key", "object_key", "key_prefix", "host_key", "kms_key_id",
    "sort_key", "key_id", "password_file", "passphrase_file", "identity_files", "recipient_files",
])


def is_secret_name(name):
    """Whether a dict key names a credential (password, secret, token, passphrase, key, ...)."""
    lowered = str(name).lower()
    if lowered in _NOT_SECRET_NAMES or lowered.startswith("_ansible_"):
        return False
    if _SECRET_NAME.search(lowered):
        return True
    return lowered == "key" or lowered.endswith("_key") or lowered.endswith("-key")


def is_header_container(name):
    """Whether a dict key holds HTTP headers (all of whose values are secrets)."""
    return str(name).lower() in _HEADER_CONTAINERS


def _strings(value):
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _strings(item)]
    return []


def secret_values(value, names=None):
    """Every non-empty string under a secret-named key of a JSON-like structure (a module's params): keys named
    like a secret, the no_log options of this collection's specs (``names``; module_utils/specs.py's when None:
    uri, connection_string, ...) and every value of a ``headers`` dict. What a text written outside the module's
    result (the last-attempt record) must not contain."""
    if names is None:
        # Here, not at the top: specs.py imports the collection's option modules, which may import this one.
        from ansible_collections.songmetrix.backup.plugins.module_utils.specs import collection_no_log_option_names

        names = collection_no_log_option_names()
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if is_header_container(key) or (isinstance(item, str) and (is_secret_name(key) or key in names)):
                found.extend(_strings(item))
            else:
                found.extend(secret_values(item, names))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found.extend(secret_values(item, names))
    return found


def _mask_bearer(match):
    token = match.group("value")
    if not (any(ch.isdigit() or ch in "._~+/=" for ch in token) or any(ch.isupper() for ch in token[1:])):
        return match.group(0)
    return match.group("scheme") + match.group("space") + MASK


def _mask_key_value(match):
    if match.group("name").lower().rsplit(".", 1)[-1] in _NOT_SECRET_NAMES:
        return match.group(0)  # manifest_key=..., host_key=...: a storage key or an id, not key material
    return match.group("name") + match.group("sep") + MASK


def redact_text(text, secrets=(), min_length=MIN_SECRET_LENGTH):
    """``text`` with known secret values and credential-looking substrings masked (None stays None)."""
    if text is None:
        return None
    if not isinstance(text, str):
        text = str(text)
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted({str(s) for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= min_length:
            text = text.replace(secret, MASK)
    text = _URI_CREDENTIALS.sub(lambda m: "%s%s:%s@" % (m.group("scheme"), m.group("user"), MASK), text)
    text = _KEY_VALUE_SECRET.sub(_mask_key_value, text)
    text = _AUTH_HEADER.sub(lambda m: m.group("name") + (m.group("scheme") or "") + MASK, text)
    text = _HEADER_LINE.sub(lambda m: m.group("name") + MASK, text)
    text = _BEARER.sub(_mask_bearer, text)
    return _KEY_IDS.sub(MASK, text)


def redact_data(value, secrets=()):
    """A copy of a JSON-like structure with secret-named keys masked and every string redacted.

    The value of a secret-named key is masked whole unless it is empty or a boolean (a flag is no secret); so is
    every value of a ``headers`` dict (its header names stay).
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = redact_text(str(key), secrets)
            if is_header_container(key) and isinstance(item, dict):
                out[name] = {redact_text(str(header), secrets): MASK if header_value not in (None, "") else header_value
                             for header, header_value in item.items()}
            elif is_secret_name(key) and not isinstance(item, bool) and item not in (None, "", [], {}):
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
