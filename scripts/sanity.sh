#!/usr/bin/env bash
# ansible-test sanity for the songmetrix.backup collection, without Docker and
# without network access other than PyPI.
#
#   scripts/sanity.sh [extra ansible-test sanity args, e.g. --test pylint]
#
# How it runs here:
# * --local: the controller is .venv's Python 3.11 (ansible-core 2.19 lives there).
# * --requirements: each sanity test that needs tools (pylint, pycodestyle, yamllint,
#   voluptuous, antsibull-docs-parser, ...) gets ansible-test's own pinned virtualenv
#   under ~/.ansible/test/venv, built from PyPI once and reused afterwards.
# * --python 3.11 only, to keep CI time down (compile/import on the other Pythons
#   the modules support, 3.9+, is covered by ruff's py39 target instead).
# * ansible-test bootstraps pip into those virtualenvs with a get-pip.py that it
#   downloads from ci-files.testing.ansible.com, which is not reachable here.
#   ansible-test reads that script from ~/.ansible/test/cache/get_pip_<ver>.py when
#   present, so we put a small stand-in there that installs pip from the official
#   pip wheel (fetched from PyPI with `pip download`). Everything else is stock.
# * No test is skipped. Tests that do not apply to the current file set (pslint:
#   no PowerShell; shellcheck: no shell scripts in the collection) pass vacuously.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$repo/.venv}"
[[ "$VENV" = /* ]] || VENV="$repo/$VENV"
collection="$repo/collections/ansible_collections/songmetrix/backup"
py="$VENV/bin/python"
ansible_test="$VENV/bin/ansible-test"
[[ -x "$ansible_test" ]] || { echo "[sanity] $ansible_test missing: run scripts/venv.sh dev" >&2; exit 1; }

# --- pip bootstrap stand-in ----------------------------------------------------
pip_version="$("$py" - <<'PY'
import pathlib, re
import ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
m = re.search(r"pip='([0-9][0-9.]*)'", src.read_text())
print(m.group(1) if m else "24.2")
PY
)"
cache="${HOME}/.ansible/test/cache"
shim="$cache/get_pip_${pip_version//./_}.py"
wheel="$cache/pip-${pip_version}-py3-none-any.whl"
marker="# songmetrix.backup: offline stand-in for get-pip.py"
mkdir -p "$cache"
if [[ ! -s "$wheel" ]]; then
    echo "[sanity] fetching pip ${pip_version} wheel for ansible-test's virtualenvs" >&2
    "$py" -m pip download --quiet --no-deps --only-binary=:all: --dest "$cache" "pip==${pip_version}" 2>&1 \
        | grep -v 'is ignored: it is neither a file nor a directory' >&2 || true
    [[ -s "$wheel" ]] || { echo "[sanity] could not download pip ${pip_version}" >&2; exit 1; }
fi
if [[ ! -e "$shim" ]] || grep -qF "$marker" "$shim"; then
    cat > "$shim.tmp" <<PY
$marker
# (written by scripts/sanity.sh; a real get-pip.py placed here is left alone)
# ansible-test runs this as: python get_pip.py [pip install options] pip==X [--no-setuptools] [--no-wheel]
import os
import sys

wheel = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-${pip_version}-py3-none-any.whl")
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.path.insert(0, wheel)
from pip._internal.cli.main import main  # noqa: E402

sys.exit(main(["install", "--upgrade", "--force-reinstall", "--no-cache-dir", wheel] + [a for a in args if not a.startswith("pip==")]))
PY
    mv "$shim.tmp" "$shim"
fi

# --- run -------------------------------------------------------------------------
cd "$collection"
export ANSIBLE_TEST_PREFER_PODMAN=0
# ansible-test wants en_US.UTF-8; Debian's minimal images have C.UTF-8 only (it falls back with a warning).
# (pip's notes about this machine's optional local package indexes are filtered out)
set +e
"$ansible_test" sanity --local --requirements --python 3.11 --color no "$@" 2>&1 \
    | grep --line-buffered -v 'is ignored: it is neither a file nor a directory'
exit "${PIPESTATUS[0]}"
