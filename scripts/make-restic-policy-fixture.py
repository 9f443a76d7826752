#!/usr/bin/env python3
"""Record restic's own retention test data as a fixture for the retention planner's unit tests.

    scripts/make-restic-policy-fixture.py GIT_DIR [REV]

GIT_DIR is a clone of https://github.com/restic/restic (bare or not), REV a commit (default HEAD).
Reads, at REV, the facts of restic's TestApplyPolicy: the snapshot list and the policy list of
internal/data/snapshot_policy_test.go, and for each policy N the golden file
internal/data/testdata/policy_keep_snapshots_N (which snapshots restic keeps, newest first, and
the reasons it gives). Writes them to
collections/ansible_collections/songmetrix/backup/tests/unit/plugins/module_utils/fixtures/restic_policy_testdata.json:
- "snapshots": the list in restic's order (ties keep that order when sorted), each with its
  time (UTC, microseconds), tags and paths;
- "cases": per policy its index N, the policy as restic's ExpirePolicy fields (counts as numbers,
  durations as the text given to ParseDuration, Tags as lists) and "keep": [[snapshot index,
  [restic's reasons]], ...] newest first.
Only data is taken: no restic code goes into this repository.
"""

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = (REPO / "collections/ansible_collections/songmetrix/backup/tests/unit/plugins/module_utils/fixtures"
          / "restic_policy_testdata.json")
TEST_FILE = "internal/data/snapshot_policy_test.go"
GOLDEN = "internal/data/testdata/policy_keep_snapshots_%d"

SNAPSHOT_RE = re.compile(
    r'\{Time: parseTimeUTC\("([^"]+)"\)(?:, Tags: \[\]string\{([^}]*)\})?(?:, Paths: \[\]string\{([^}]*)\})?\}')
FIELD_RE = re.compile(r'(\w+):\s*(?:(-?\d+)|data\.ParseDurationOrPanic\("([^"]*)"\)|(\[\]data\.TagList\{))')


def git_show(git_dir, rev, path):
    return subprocess.run(["git", "--git-dir", git_dir, "show", "%s:%s" % (rev, path)], check=True,
                          capture_output=True, text=True).stdout


def strings(text):
    return re.findall(r'"([^"]*)"', text or "")


def utc_stamp(text):
    """restic's times as one exact form: 2014-08-13T10:20:30.100000Z."""
    text = text.replace("T", " ").rstrip("Z")
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            moment = datetime.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    raise SystemExit("cannot read the time %r" % text)


def block(source, opener):
    """The text between the braces that follow ``opener`` in ``source``."""
    start = source.index(opener) + len(opener)
    depth = 1
    for index in range(start, len(source)):
        depth += {"{": 1, "}": -1}.get(source[index], 0)
        if depth == 0:
            return source[start:index]
    raise SystemExit("unbalanced braces after %r" % opener)


def entries(body):
    """The top-level {...} entries of a Go composite literal's body."""
    found, depth, start = [], 0, None
    for index, char in enumerate(body):
        if char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                found.append(body[start + 1:index])
    return found


def policy(entry):
    fields = {}
    for match in FIELD_RE.finditer(entry):
        name, count, duration, tags = match.groups()
        if count:
            fields[name] = int(count)
        elif tags:
            fields[name] = [strings(group) for group in entries(block(entry[match.start():], tags))]
        else:
            fields[name] = duration
    return fields


def snapshots(source):
    body = block(source, "var testExpireSnapshots = data.Snapshots{")
    found = [{"time": utc_stamp(time), "tags": strings(tags), "paths": strings(paths)}
             for time, tags, paths in SNAPSHOT_RE.findall(body)]
    if len(found) != body.count("parseTimeUTC("):
        raise SystemExit("read %d of %d snapshots" % (len(found), body.count("parseTimeUTC(")))
    return found


def indexes(snapshot_list, kept):
    """Each kept snapshot's index in snapshot_list: the golden list is newest first in a stable sort, so
    it is matched, in order, against that sort (equal snapshots are interchangeable)."""
    ordered = sorted(range(len(snapshot_list)), key=lambda i: snapshot_list[i]["time"], reverse=True)
    found, position = [], 0
    for snap in kept:
        wanted = (utc_stamp(snap["time"]), snap.get("tags") or [], snap.get("paths") or [])
        while position < len(ordered):
            candidate = snapshot_list[ordered[position]]
            position += 1
            if (candidate["time"], candidate["tags"], candidate["paths"]) == wanted:
                found.append(ordered[position - 1])
                break
        else:
            raise SystemExit("kept snapshot %r is not in the list" % (wanted,))
    return found


def main(argv):
    if not 2 <= len(argv) <= 3:
        raise SystemExit(__doc__)
    git_dir, rev = argv[1], argv[2] if len(argv) == 3 else "HEAD"
    commit = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", rev], check=True, capture_output=True,
                            text=True).stdout.strip()
    source = git_show(git_dir, commit, TEST_FILE)
    snapshot_list = snapshots(source)
    policies = [policy(entry) for entry in entries(block(source, "var tests = []data.ExpirePolicy{"))]
    cases = []
    for number, fields in enumerate(policies):
        golden = json.loads(git_show(git_dir, commit, GOLDEN % number))
        kept = golden.get("keep") or []
        matches = [reason["matches"] for reason in golden.get("reasons") or []]
        if len(matches) != len(kept):
            raise SystemExit("policy %d: %d kept but %d reasons" % (number, len(kept), len(matches)))
        kept_indexes = indexes(snapshot_list, kept)
        cases.append({"index": number, "policy": fields,
                      "keep": [[kept_indexes[n], matches[n]] for n in range(len(kept))]})
    fixture = {
        "source": "restic %s: TestApplyPolicy in %s and %s (N = index)" % (
            commit, TEST_FILE, GOLDEN.replace("%d", "N")),
        "timezone": "UTC",
        "snapshots": snapshot_list,
        "cases": cases,
    }
    with open(OUTPUT, "w") as handle:
        handle.write("{\n")
        for position, key in enumerate(fixture):
            value = fixture[key]
            if isinstance(value, list):  # one line per snapshot or case: readable diffs, a small file
                text = "[\n" + ",\n".join("  " + json.dumps(item) for item in value) + "\n ]"
            else:
                text = json.dumps(value)
            handle.write(" %s: %s%s\n" % (json.dumps(key), text, "," if position < len(fixture) - 1 else ""))
        handle.write("}\n")
    print("wrote %s: %d snapshots, %d policies (restic %s)" % (OUTPUT, len(snapshot_list), len(cases), commit[:12]))


if __name__ == "__main__":
    main(sys.argv)
