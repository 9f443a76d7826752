#!/usr/bin/env bash
# Everything `make test` needs, on a fresh Debian 12 (root) or a developer machine:
#   1. Debian packages for the real-server tests and the dump tools (only when missing);
#   2. .venv with requirements-dev.txt (only when the requirement files changed);
#   3. a second PostgreSQL major (16, from PyPI's pgserver wheel) for the version-skew tests.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Servers started by tests/servers.py, the dump/compression/encryption tools the engine drives, and
# the shellcheck linter (ansible-test's shellcheck sanity test, scripts/ in make lint), and chromium
# (headless) that renders the status report in tests/playbook/test_report.py.
TEST_APT_PACKAGES=(
    postgresql
    postgresql-client
    mariadb-server
    mariadb-client
    openssh-server
    openssh-client
    pigz
    zstd
    lz4
    sqlite3
    tar
    gzip
    shellcheck
    openssl
    curl
    age
    gnupg
    cron
    chromium
    # molecule/default builds its Debian 12 test hosts with debootstrap (scripts/test.sh molecule)
    debootstrap
)
# Extra packages can be asked for without editing this file.
# shellcheck disable=SC2206
TEST_APT_PACKAGES+=(${EXTRA_TEST_APT_PACKAGES:-})

"$repo/scripts/apt-ensure.sh" "${TEST_APT_PACKAGES[@]}"
"$repo/scripts/venv.sh" dev
# PostgreSQL 16 binaries beside Debian's 15, for the server/client version-skew tests.
"$repo/scripts/fetch-postgresql-other.sh"
