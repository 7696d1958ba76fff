#!/usr/bin/env bash
# Creates (or updates) .venv-localstack with LocalStack pinned as in
# infra/localstack/requirements.txt. LocalStack needs Python >= 3.12: the first of
# $LOCALSTACK_PYTHON, python3.13/python3.12 on PATH, or pyenv's 3.12+ versions is used; without
# one it fails and says so (it never falls back to another emulator). Idempotent and quiet when
# nothing changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv-localstack"
req="$root/infra/localstack/requirements.txt"
stamp="$venv/.requirements.sha"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }
candidates=()
[ -n "${LOCALSTACK_PYTHON:-}" ] && candidates+=("$LOCALSTACK_PYTHON")
for v in python3.14 python3.13 python3.12 python3; do
  command -v "$v" >/dev/null 2>&1 && candidates+=("$(command -v "$v")")
done
pyenv_root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
for p in $(ls -d "$pyenv_root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do
  candidates+=("$p")
done
python=""
for c in "${candidates[@]}"; do
  if ok "$c"; then python="$c"; break; fi
done
if [ -z "$python" ]; then
  echo "LocalStack needs Python >= 3.12 and none was found (looked at \$LOCALSTACK_PYTHON," >&2
  echo "python3.12+ on PATH and $pyenv_root/versions). Install one, e.g. 'pyenv install 3.12'," >&2
  echo "or point LOCALSTACK_PYTHON at it." >&2
  exit 1
fi
echo "installing LocalStack into $venv with $python ($("$python" --version 2>&1))"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
echo "LocalStack ready: $venv (localstack-core $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("localstack-core"))'))"
