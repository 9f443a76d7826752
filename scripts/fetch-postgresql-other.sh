#!/usr/bin/env bash
# A second PostgreSQL major for the version-skew tests (tests/faults/test_fault_version_skew.py):
# Debian 12 ships only PostgreSQL 15, and no other major is reachable from its package registry.
# PyPI's pgserver wheel carries a relocatable PostgreSQL 16 build (server and client tools); only
# its binaries are used, from any Python. Pinned by version and SHA-256, unpacked once into
#
#   ${SONGMETRIX_CACHE:-~/.cache/songmetrix-backup}/postgresql-16.2/   (bin/ = pgserver/pginstall/bin)
#
# tests/servers.py (other_pg_bin_dir) looks there. Idempotent: nothing is fetched when present.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$repo/.venv}"
[[ "$VENV" = /* ]] || VENV="$repo/$VENV"
py="$VENV/bin/python"
[[ -x "$py" ]] || py=python3

version=16.2
wheel=pgserver-0.1.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
sha256=d595789b47624a3d963aa9aa6359da9be31beb7e61f1a45541953242068b8813
cache="${SONGMETRIX_CACHE:-$HOME/.cache/songmetrix-backup}"
dest="$cache/postgresql-$version"

if [[ -x "$dest/pgserver/pginstall/bin/postgres" ]]; then
    exit 0
fi
if [[ "$(uname -m)" != x86_64 ]]; then
    echo "[pg-$version] only an x86_64 build is pinned; the version-skew tests need one for $(uname -m)" >&2
    exit 1
fi

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "[pg-$version] fetching the pgserver wheel (PostgreSQL $version binaries) from PyPI" >&2
# The wheel is for CPython 3.11, whatever Python runs pip: only its files are used.
"$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
    --dest "$tmp" "pgserver==0.1.4" 2>&1 | grep -v 'is ignored: it is neither a file nor a directory' >&2 || true
[[ -s "$tmp/$wheel" ]] || { echo "[pg-$version] download failed: $wheel" >&2; exit 1; }
echo "$sha256  $tmp/$wheel" | sha256sum --check --quiet -

# Unpack the server, the client tools and their libraries (not the C headers), keeping the
# executable bits that zip stores in its external attributes.
"$py" - "$tmp/$wheel" "$tmp/unpacked" <<'PY'
import os
import sys
import zipfile

wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    for info in archive.infolist():
        name = info.filename
        if not name.startswith(("pgserver/pginstall/", "pgserver.libs/")) or "/include/" in name:
            continue
        path = archive.extract(info, out)
        mode = (info.external_attr >> 16) & 0o777
        if mode and not info.is_dir():
            os.chmod(path, mode)
PY
"$tmp/unpacked/pgserver/pginstall/bin/postgres" --version >/dev/null
rm -rf "$dest"
mv "$tmp/unpacked" "$dest"
echo "[pg-$version] ready in $dest" >&2
