#!/usr/bin/env bash
# Install Debian packages that are missing; do nothing when all are installed.
#
#   scripts/apt-ensure.sh PKG...
#
# `apt-get update` runs once, and only when something must be installed.
# Services that package scripts would start (postgresql, mariadb, ssh) are not
# started: the tests start their own servers on free ports in temp dirs.
set -euo pipefail

[[ $# -gt 0 ]] || { echo "usage: $0 PKG..." >&2; exit 2; }

missing=()
for pkg in "$@"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "[apt] installing missing packages: ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "[apt] not root and no sudo: install these packages first: ${missing[*]}" >&2
        exit 1
    fi
fi

# Keep package scripts from starting daemons (Debian's policy-rc.d protocol: 101 = action forbidden).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 0755 "$policy"
    made_policy=1
fi
cleanup() { if [[ $made_policy -eq 1 ]]; then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
