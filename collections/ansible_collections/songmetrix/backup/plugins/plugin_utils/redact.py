# Copyright: songmetrix.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret redaction for controller-side plugins (the email_report callback).

The patterns and the text/data redaction are module_utils/redact.py's (one implementation for modules,
notify and this callback); re-exported here. What is controller-specific: collect_secrets() gathers the
known secret values from task arguments (secret-named keys and this collection's no_log option names),
which redact_text() then replaces wherever they occur, longest first.
"""

from __future__ import annotations

from ansible_collections.songmetrix.backup.plugins.module_utils.redact import (
    MASK,
    MIN_SECRET_LENGTH,
    is_secret_name,
    redact_data,
    redact_text,
)

__all__ = ["MASK", "MIN_SECRET_LENGTH", "NO_LOG_OPTION_NAMES", "collect_secrets", "is_secret_name", "redact_data",
           "redact_text"]

# Option names that this collection's modules declare no_log (module_utils/specs.py); their
# values are secrets whatever the name looks like (a MongoDB uri, an age identity).
NO_LOG_OPTION_NAMES = frozenset({
    "password", "uri", "access_key", "secret_key", "session_token", "private_key_passphrase",
    "passphrase", "identity", "url",
})


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
                if isinstance(key, str) and (is_secret_name(key) or key.lower() in extra_names):
                    take(item)
                else:
                    walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(args)
    return found
