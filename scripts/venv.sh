#!/usr/bin/env bash
# Create or refresh the project virtualenv (.venv).
#
#   scripts/venv.sh runtime   # requirements.txt            (make venv, make backup)
#   scripts/venv.sh dev       # requirements-dev.txt too    (make test and its suites)
#
# Idempotent: pip runs only when the requirement files changed since the last
# successful install (a sha256 of their contents is kept in .venv/.requirements-<kind>.sha256).
# Works on a fresh Debian 12 as root with only python3 and git: if `python3 -m venv`
# fails because Debian's python3-venv (ensurepip) is missing, it is installed with apt-get.
set -euo pipefail

kind="${1:-runtime}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

case "$kind" in
    runtime) req_files=(requirements.txt) ;;
    dev) req_files=(requirements.txt requirements-dev.txt) ;;
    *) echo "usage: $0 runtime|dev" >&2; exit 2 ;;
esac

log() { printf '[venv] %s\n' "$*" >&2; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "[venv] $PYTHON not found: Python >= 3.11 is required" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "[venv] $("$PYTHON" -V 2>&1) is too old: ansible-core 2.19+ needs Python >= 3.11 (set PYTHON=...)" >&2
    exit 1
fi

venv_ok() {
    [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1
}

if ! venv_ok; then
    rm -rf "$VENV"
    log "creating $VENV with $("$PYTHON" -V 2>&1) ($(command -v "$PYTHON"))"
    if ! "$PYTHON" -m venv "$VENV" 2>/tmp/venv-err.$$; then
        cat /tmp/venv-err.$$ >&2
        rm -rf "$VENV"
        # Debian's python3 ships without ensurepip; it lives in python3-venv / python3.X-venv.
        pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        log "python -m venv failed; installing Debian's python${pyver}-venv"
        "$repo/scripts/apt-ensure.sh" "python${pyver}-venv"
        "$PYTHON" -m venv "$VENV"
    fi
    rm -f /tmp/venv-err.$$
fi

stamp="$VENV/.requirements-$kind.sha256"
want="$(cat "${req_files[@]}" | sha256sum | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [[ "$want" == "$have" ]]; then
    exit 0
fi

log "installing ${req_files[*]} into $VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip_log="$VENV/pip-install.log"
pip_quiet() {
    # This machine's pip.conf names optional local indexes; hide pip's "is ignored" noise about them.
    if ! "$VENV/bin/python" -m pip "$@" >"$pip_log" 2>&1; then
        grep -v 'is ignored: it is neither a file nor a directory' "$pip_log" >&2 || true
        echo "[venv] pip $* failed (log: $pip_log)" >&2
        exit 1
    fi
    grep -v 'is ignored: it is neither a file nor a directory' "$pip_log" >&2 || true
}
pip_quiet install --quiet --upgrade pip
pip_quiet install --quiet -r "${req_files[-1]}"
echo "$want" > "$stamp"
# A dev install satisfies the runtime requirements too.
if [[ "$kind" == dev ]]; then
    sha256sum < requirements.txt | cut -d" " -f1 > "$VENV/.requirements-runtime.sha256"
fi
log "ok: $("$VENV/bin/python" -V), $("$VENV/bin/python" -c 'import ansible; print("ansible-core", ansible.__version__)')"
