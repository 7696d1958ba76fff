#!/usr/bin/env bash
# Validates template.yaml offline with AWS SAM CLI (`sam validate --lint`), installing the pinned
# tools into .venv-tools on first use (infra/tools/install.sh). With --build it also runs `sam build`:
# cargo-lambda cross-compiles the six functions for arm64 in release (fat LTO); measured here
# at ~NN min cold on 2 cores, so CI runs only the validation.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash infra/tools/install.sh
export PATH="$root/.venv-tools/bin:$PATH"
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
sam validate --lint --template template.yaml
if [ "${1:-}" = "--build" ]; then
  sam build --template template.yaml
  # What Lambda will run: an arm64 ELF named bootstrap per function; sizes as deployed (zipped).
  for fn in EtlFunction AnalyticsFunction IngestFunction AuthorizerFunction IndexBuilderFunction SearchApiFunction; do
    "$root/.venv-tools/bin/python" - ".aws-sam/build/$fn/bootstrap" <<'PY'
import io, os, sys, zipfile
path = sys.argv[1]
with open(path, "rb") as f:
    head = f.read(20)
# ELF magic, then e_machine (offset 18, little-endian): 0xB7 is AArch64.
if head[:4] != b"\x7fELF" or int.from_bytes(head[18:20], "little") != 0xB7:
    sys.exit(f"{path}: not an arm64 ELF binary")
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    z.write(path, "bootstrap")
name = path.split("/")[-2]
print(f"{name}: bootstrap {os.path.getsize(path) / 1e6:.1f} MB, zipped {len(buf.getvalue()) / 1e6:.1f} MB (arm64)")
PY
  done
fi
