"""The base every module of this collection runs on.

It owns what modules would otherwise repeat: turning BackupError (and anything unexpected)
into one readable failure, passing warnings on, and scrubbing secrets from text that came from
child processes before it reaches a result.
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.redact import redact_text

# A module's own no_log values are masked in tool output from 3 characters on (free text elsewhere: 4).
_SCRUB_MIN_SECRET_LENGTH = 3


def scrub(text, secrets=()):
    """``text`` with known secret values and credential-looking substrings masked (module_utils/redact.py)."""
    if not text:
        return text
    return redact_text(text, secrets, min_length=_SCRUB_MIN_SECRET_LENGTH)


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
