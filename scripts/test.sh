#!/usr/bin/env bash
# Run test suites and report each one's result and wall time.
#
#   scripts/test.sh [unit] [integration] [lint] [sanity] [latest] [molecule]     (default: all six)
#
# Every requested suite runs even when an earlier one failed; the exit status is
# non-zero when any suite failed. A pytest suite that collects no tests at all
# (exit code 5) counts as passed, with a note: that happens only while a suite is empty.
# Extra pytest arguments: PYTEST_ARGS="-k foo -x" scripts/test.sh unit
# Suites are called indirectly ("suite_$name"):
# shellcheck disable=SC2317
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo" || exit 1
VENV="${VENV:-.venv}"
[[ "$VENV" = /* ]] || VENV="$repo/$VENV"
export PATH="$VENV/bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1
collection_tests="collections/ansible_collections/songmetrix/backup/tests"

# shellcheck disable=SC2206
pytest_extra=(${PYTEST_ARGS:-})

pytest_suite() {
    # pytest exit 5 = "no tests were collected"
    local rc=0
    "$VENV/bin/python" -m pytest "$@" "${pytest_extra[@]}" || rc=$?
    if [[ $rc -eq 5 ]]; then
        echo "[test] no tests collected in: $*  (suite is empty, not a failure)"
        return 0
    fi
    return "$rc"
}

suite_unit() {
    if [[ ! -d "$collection_tests/unit" ]]; then
        echo "[test] $collection_tests/unit does not exist yet"
        return 0
    fi
    pytest_suite "$collection_tests/unit"
}

suite_integration() {
    # Repository-level tests: tests/integration (real servers), tests/playbook, ... (not tests/bench).
    pytest_suite tests
}

suite_lint() {
    local rc=0
    echo "[lint] ruff check"
    "$VENV/bin/ruff" check --no-cache . || rc=1
    echo "[lint] ansible-lint (profile: production)"
    local color=()
    [[ -t 1 ]] || color=(--nocolor)
    "$VENV/bin/ansible-lint" "${color[@]}" || rc=1
    if command -v shellcheck >/dev/null 2>&1; then
        echo "[lint] shellcheck scripts/ .ci/run"
        shellcheck -x scripts/*.sh .ci/run || rc=1
    else
        echo "[lint] shellcheck not installed: skipped (make test installs it)"
    fi
    return "$rc"
}

suite_sanity() {
    "$repo/scripts/sanity.sh"
}

find_python313() {
    # pyenv's shim answers only for the active version, so look in pyenv's tree as well.
    local candidate
    for candidate in "$(command -v python3.13 2>/dev/null)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13; do
        if [[ -n "$candidate" && -x "$candidate" ]] && "$candidate" -V >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# What `latest` runs again: what depends on the ansible-core or Python version. The playbook
# suite (ansible-playbook, callbacks, roles), the security suite (no_log, argument validation,
# tar extraction), and one round trip per engine, storage and feature through the modules
# (stdlib sqlite3, tarfile, subprocess and ssl; boto3 and paramiko). The storage, prune and
# fault suites test server behaviour that does not change with either, so they run once, in
# `integration`: running everything twice took 17 minutes of a 35-minute `make test`.
latest_tests=(
    tests/playbook
    tests/security
    tests/integration/test_dump_validation.py
    tests/integration/test_dump_postgresql.py
    tests/integration/test_dump_mariadb.py
    tests/integration/test_dump_sqlite_files.py
    tests/integration/test_supabase_dump.py
    tests/integration/test_mongodb_dump.py
    tests/integration/test_mongodb_restore.py
    tests/integration/test_mssql_dump.py
    tests/integration/test_mssql_restore.py
    tests/integration/test_restore_matrix.py
    tests/integration/test_restore.py
    tests/integration/test_encryption.py
    tests/integration/test_chunks.py
    tests/integration/test_verify_deep.py
    tests/integration/test_info_verify_local.py
    tests/integration/test_notify.py
    tests/integration/test_healthcheck.py
    tests/integration/test_metrics.py
    tests/integration/test_s3_tls.py
)

suite_latest() {
    # The newest supported pair, ansible-core 2.21 on Python 3.13, in its own venv: unit tests
    # and latest_tests (lint and sanity run once, in the main venv).
    local py
    if ! py="$(find_python313)"; then
        echo "[latest] Python 3.13 not found (pyenv install 3.13, or put python3.13 on PATH)"
        return 1
    fi
    VENV="$repo/.venv-latest" PYTHON="$py" "$repo/scripts/venv.sh" dev || return 1
    local latest="$repo/.venv-latest"
    "$latest/bin/ansible" --version | head -n 1
    PATH="$latest/bin:$PATH" "$latest/bin/python" -m pytest "$collection_tests/unit" "${latest_tests[@]}" "${pytest_extra[@]}"
}

suite_molecule() {
    # molecule/default: three Debian 12 test hosts (chroots with sshd on 127.0.0.1 ports, from a
    # debootstrap tarball cached in ~/.cache/songmetrix-backup), install.yml then backup.yml
    # against a real PostgreSQL and MariaDB, idempotence, testinfra verifiers. Root only
    # (debootstrap, mounts, namespaces): see molecule/README.md.
    if [[ $(id -u) -ne 0 ]]; then
        echo "[molecule] needs root (debootstrap, mount, unshare, chroot)"
        return 1
    fi
    "$VENV/bin/molecule" test --scenario-name default
}

suites=("$@")
[[ ${#suites[@]} -gt 0 ]] || suites=(unit integration lint sanity latest molecule)

declare -A result seconds
failed=0
for s in "${suites[@]}"; do
    if ! declare -F "suite_$s" >/dev/null; then
        echo "unknown suite: $s (known: unit integration lint sanity latest molecule)" >&2
        exit 2
    fi
    echo
    echo "==================== $s ===================="
    start=$(date +%s)
    if "suite_$s"; then result[$s]=passed; else result[$s]=FAILED; failed=1; fi
    seconds[$s]=$(( $(date +%s) - start ))
    echo "==================== $s: ${result[$s]} (${seconds[$s]}s) ===================="
done

echo
echo "suite        result   seconds"
for s in "${suites[@]}"; do
    printf '%-12s %-8s %7s\n' "$s" "${result[$s]}" "${seconds[$s]}"
done
exit $failed
