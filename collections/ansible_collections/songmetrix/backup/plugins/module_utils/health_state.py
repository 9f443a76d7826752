"""Consecutive failures per check name, kept on the host in ``<state_dir>/<name>.json``.

One file per check name (two checks running at once never overwrite each other's count), mode
0600 in a 0700 folder, written atomically (temp file, fsync, rename, fsync of the folder). A file
is rewritten only when what it holds changes (a failure, or the first success after failures),
so a steadily healthy check leaves it alone; the module reports ``changed`` exactly then.

Contents: {"name", "consecutive_failures", "alerted", "last_status", "last_failure", "since"}.
"""

import datetime
import hashlib
import json
import os
import re

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.local_files import write_atomically

FILE_MODE = 0o600
DIR_MODE = 0o700
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def state_path(state_dir, name):
    """<state_dir>/<name>.json; names with other characters get a readable part and a hash."""
    safe = _SAFE.sub("_", name)[:80].lstrip(".") or "check"
    if safe != name:
        safe = "%s-%s" % (safe, hashlib.sha256(name.encode("utf-8")).hexdigest()[:12])
    return os.path.join(state_dir, "healthcheck-%s.json" % safe)


def load(path):
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BackupError("cannot read the healthcheck state %s: %s" % (path, getattr(exc, "strerror", None) or exc))
    return data if isinstance(data, dict) else {}


def save(path, data):
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, DIR_MODE, exist_ok=True)
        write_atomically(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"), FILE_MODE)
    except OSError as exc:
        raise BackupError("cannot write the healthcheck state %s: %s" % (path, exc.strerror or exc))


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def advance(old, name, failed, status, message, alert_after):
    """(new state, alert, recovered) after one run; pure, for the module and the tests."""
    count = int(old.get("consecutive_failures") or 0)
    alerted = bool(old.get("alerted"))
    if failed:
        count += 1
        alert = count == alert_after
        new = dict(name=name, consecutive_failures=count, alerted=alerted or alert, last_status=status,
                   last_failure=message, since=old.get("since") if count > 1 and old.get("since") else _now())
        return new, alert, False
    recovered = alerted
    new = dict(name=name, consecutive_failures=0, alerted=False, last_status=status, last_failure=None, since=None)
    return new, False, recovered


def _same(old, new):
    keys = ("consecutive_failures", "alerted")
    return all((old.get(k) or 0) == (new.get(k) or 0) for k in keys)


def track(state_dir, name, failed, status, message, alert_after, check_mode):
    """The state fields of the result: consecutive_failures, alert, recovered, state_file, state_changed."""
    if alert_after < 1:
        raise ValidationError("alert_after must be 1 or more, not %d" % alert_after)
    if not state_dir:
        if alert_after > 1:
            raise ValidationError("alert_after %d needs state_dir: without it no run knows the runs before"
                                  % alert_after)
        return dict(consecutive_failures=1 if failed else 0, alert=bool(failed), recovered=False, state_file=None,
                    state_changed=False)
    if not os.path.isabs(state_dir):
        raise ValidationError("state_dir must be an absolute path, not %r" % state_dir)
    path = state_path(state_dir, name)
    old = load(path)
    new, alert, recovered = advance(old, name, failed, status, message, alert_after)
    changed = not _same(old, new)
    if changed and not check_mode:
        save(path, new)
    return dict(consecutive_failures=new["consecutive_failures"], alert=alert, recovered=recovered,
                state_file=path, state_changed=changed)
