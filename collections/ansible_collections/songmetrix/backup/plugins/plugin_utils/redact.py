# Copyright: songmetrix.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret redaction for controller-side plugins (the email_report callback, the status report).

The patterns and the text/data redaction are module_utils/redact.py's (one implementation for modules,
notify and this callback); re-exported here. What is controller-specific: collect_secrets() gathers the
known secret values from task arguments (secret-named keys, every header value and this collection's no_log
option names), which redact_text() then replaces wherever they occur, longest first.
"""

from __future__ import annotations

import ast
import os

from ansible_collections.songmetrix.backup.plugins.module_utils.redact import (
    MASK,
    MIN_SECRET_LENGTH,
    is_header_container,
    is_secret_name,
    redact_data,
    redact_text,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.specs import collection_no_log_option_names

__all__ = ["MASK", "MIN_SECRET_LENGTH", "NO_LOG_OPTION_NAMES", "collect_secrets", "is_secret_name", "redact_data",
           "redact_text"]

MODULES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "modules")


def _is_true(node):
    return isinstance(node, ast.Constant) and node.value is True


def _declares_no_log(node):
    """Whether an option's AST node is ``dict(..., no_log=True)`` or ``{..., "no_log": True}``."""
    if isinstance(node, ast.Call):
        return any(keyword.arg == "no_log" and _is_true(keyword.value) for keyword in node.keywords)
    if isinstance(node, ast.Dict):
        return any(isinstance(key, ast.Constant) and key.value == "no_log" and _is_true(value)
                   for key, value in zip(node.keys, node.values))
    return False


def module_no_log_option_names(folder=MODULES_DIR):
    """The no_log option names that the collection's modules declare in their own argument specs (the notify
    module's webhook ``url`` and ``headers``), read from their source: a module builds its spec in main(), which
    cannot run here. The shared options are module_utils/specs.py's (collection_no_log_option_names())."""
    names = set()
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return names
    for entry in entries:
        if not entry.endswith(".py") or entry.startswith("_"):
            continue
        with open(os.path.join(folder, entry), encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), entry)
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg and _declares_no_log(node.value):
                names.add(node.arg)
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if isinstance(key, ast.Constant) and isinstance(key.value, str) and _declares_no_log(value):
                        names.add(key.value)
    return names


# Option names that this collection's modules declare no_log (module_utils/specs.py and the modules' own
# specs); their values are secrets whatever the name looks like (a MongoDB uri, a Supabase connection_string,
# a webhook url). Derived, never listed by hand: an option added with no_log=True is in it at once.
NO_LOG_OPTION_NAMES = frozenset(collection_no_log_option_names() | module_no_log_option_names())


def collect_secrets(args, extra_names=NO_LOG_OPTION_NAMES) -> set:
    """The string values in ``args`` (task arguments, nested) stored under secret-looking keys, under the
    collection's no_log option names and in ``headers`` dicts."""
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
                if isinstance(key, str) and (is_secret_name(key) or is_header_container(key)
                                             or key.lower() in extra_names):
                    take(item)
                else:
                    walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(args)
    return found
