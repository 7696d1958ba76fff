#!/usr/bin/env bash
# Validates template.yaml offline with AWS SAM CLI (`sam validate --lint`), installing the pinned
# CLI into .venv-tools on first use. With --build it also runs `sam build` (needs cargo-lambda,
# installed from PyPI with its zig; a cold release build of every function takes 20+ minutes on
# 2 cores, so CI runs only the validation).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv-tools"
req="$root/scripts/requirements-tools.txt"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if ! [ -x "$venv/bin/sam" ] || [ "$(cat "$venv/.requirements.sha" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$venv/.requirements.sha"
fi
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
"$venv/bin/sam" validate --lint --template template.yaml
if [ "${1:-}" = "--build" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check cargo-lambda==1.9.2
  PATH="$venv/bin:$PATH" "$venv/bin/sam" build --template template.yaml
fi
