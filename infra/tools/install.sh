#!/usr/bin/env bash
# Installs the pinned deployment tooling (infra/tools/requirements.txt: AWS SAM CLI, and
# cargo-lambda, which brings zig for cross-compiling) into .venv-tools, once per change of the
# pins. Kept apart from the emulator's virtualenv: aws-sam-cli pins its own boto3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv-tools"
req="$root/infra/tools/requirements.txt"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if ! [ -x "$venv/bin/sam" ] || ! [ -x "$venv/bin/cargo-lambda" ] \
    || [ "$(cat "$venv/.requirements.sha" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$venv/.requirements.sha"
fi
