"""The base every module of this collection runs on.

It owns what modules would otherwise repeat: turning BackupError (and anything unexpected)
into one readable failure, passing warnings on, and scrubbing secrets from text that came from
child processes before it reaches a result.
"""

import re
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError

# Credentials that tools sometimes echo back: URIs with user:password@ and key=value pairs.
_URI_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@\s]*@")
_KEY_VALUE_SECRET = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|secret_key|access_key)(\s*[=:]\s*)(\S+)")


def scrub(text, secrets=()):
    """``text`` with known secret values and credential-looking substrings masked."""
    if not text:
        return text
    for secret in secrets:
        if secret and len(str(secret)) >= 3:
            text = text.replace(str(secret), "********")
    text = _URI_CREDENTIALS.sub(r"\g<scheme>\g<user>:********@", text)
    return _KEY_VALUE_SECRET.sub(r"\1\2********", text)


class BackupModule(AnsibleModule):
    """AnsibleModule plus run(action): action(module) returns the result dict or raises BackupError."""

    def _secrets(self):
        return list(getattr(self, "no_log_values", ()) or ())

    def scrub(self, text):
        return scrub(text, self._secrets())

    def run(self, action):
        try:
            result = action(self)
        except BackupError as exc:
            details = dict(exc.details)
            self.fail_json(msg=self.scrub(str(exc)), **details)
        except Exception as exc:  # an unexpected bug must still end as a readable failure
            self.fail_json(
                msg="unexpected error: %s" % self.scrub("%s: %s" % (type(exc).__name__, exc)),
                exception=self.scrub(traceback.format_exc()),
            )
        for warning in result.pop("warnings", None) or []:
            self.warn(self.scrub(warning))
        self.exit_json(**result)
