"""The base every module of this collection runs on.

It owns what modules would otherwise repeat: turning BackupError (and anything unexpected)
into one readable failure, passing warnings on, and scrubbing secrets from text that came from
child processes before it reaches a result.
"""

import signal
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.redact import redact_text
from ansible_collections.songmetrix.backup.plugins.module_utils.validation import no_control_chars

# A module's own no_log values are masked in tool output from 3 characters on (free text elsewhere: 4).
_SCRUB_MIN_SECRET_LENGTH = 3


def scrub(text, secrets=()):
    """``text`` with known secret values and credential-looking substrings masked (module_utils/redact.py)."""
    if not text:
        return text
    return redact_text(text, secrets, min_length=_SCRUB_MIN_SECRET_LENGTH)


class Stopped(BaseException):
    """The module was told to stop (SIGTERM, SIGHUP, SIGINT). Like KeyboardInterrupt, no ``except
    Exception`` takes it for an ordinary error (no retry, no spooling); ``finally`` blocks run."""


def _stop(signum, _frame):
    raise Stopped("the run was stopped by %s before it finished" % signal.Signals(signum).name)


def stop_on_signals():
    """Turn SIGTERM (a cancelled AWX job, systemd stopping a unit, timeout(1)), SIGHUP (the SSH
    connection lost) and SIGINT into an exception: the ``finally`` blocks that remove temporary
    files holding secrets, abort uploads and release locks then run, as they do on any failure.
    (SIGKILL cannot be caught: what it leaves is what a crash leaves.)"""
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _stop)


def path_options(spec, params, label=""):
    """(dotted name, value) of every option that names a file that is set, in nested options too: type
    path, and every option called path (storage.path is a str: on SFTP it is a remote path)."""
    for name, option in (spec or {}).items():
        value = (params or {}).get(name)
        if value is None:
            continue
        dotted = label + name
        if option.get("type") == "path" or name == "path":
            yield dotted, value
        elif option.get("type") == "list" and option.get("elements") == "path":
            for item in value:
                yield dotted, item
        if option.get("options"):
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    yield from path_options(option["options"], item, dotted + ".")


class BackupModule(AnsibleModule):
    """AnsibleModule plus run(action): action(module) returns the result dict or raises BackupError."""

    def _secrets(self):
        return list(getattr(self, "no_log_values", ()) or ())

    def scrub(self, text):
        return scrub(text, self._secrets())

    def run(self, action):
        stop_on_signals()
        try:
            # A NUL or a line break in a path is a mistake (a folded YAML string), never a name to create.
            for label, value in path_options(self.argument_spec, self.params):
                no_control_chars(label, value)
            result = action(self)
        except BackupError as exc:
            details = dict(exc.details)
            self.fail_json(msg=self.scrub(str(exc)), **details)
        except Stopped as exc:
            self.fail_json(msg=str(exc))
        except Exception as exc:  # an unexpected bug must still end as a readable failure
            self.fail_json(
                msg="unexpected error: %s" % self.scrub("%s: %s" % (type(exc).__name__, exc)),
                exception=self.scrub(traceback.format_exc()),
            )
        for warning in result.pop("warnings", None) or []:
            self.warn(self.scrub(warning))
        self.exit_json(**result)
