#!/usr/bin/env bash
# Retrieval quality by mode (lexical, semantic, hybrid): the Lambda-guide question set
# (bench/questions, file-level judgements) and Cranfield, scored by the collection's ir_eval.py
# (nDCG@10, MRR@10, Recall@100). Results: docs/benchmarks.md.
#   bench/questions.sh              the `test` half (what is reported)
#   SPLIT=tune bench/questions.sh   the half the fusion was tuned on
# Fusion overrides for tuning runs: RRF_K, W_LEX, W_SEM, CANDIDATES (see bench/tune-fusion.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
shared="${SHARED:-$root/../shared}"
profile="${PROFILE:-profiling}"
split="${SPLIT:-test}"
EMBED_MODEL_DIR="$(bash infra/model/install.sh)"
export EMBED_MODEL_DIR
cargo build --quiet --profile "$profile" -p dataflow-search --example questions --example cranfield
bin="target/$profile/examples"
out="bench/out/questions"
mkdir -p "$out"
score() { python3 "$shared/eval/ir_eval.py" "$1" "$2"; }
# The embedded indexes are kept between runs (delete bench/out/questions to rebuild them).
INDEX_CACHE="$out/lambda-guide.dfidx" "$bin/questions" "$shared/corpora/aws-lambda-guide" \
  bench/questions/lambda-guide.jsonl "$split" "$out/$split"
for m in lexical semantic hybrid; do
  echo "lambda guide ($split) $m: $(score "$out/$split/qrels.tsv" "$out/$split/$m.run")"
done
[ "${GUIDE_ONLY:-0}" = 1 ] && exit 0
for m in lexical semantic hybrid; do
  MODE="$m" INDEX_CACHE="$out/cranfield.dfidx" "$bin/cranfield" "$shared/eval/cranfield" "$out/cranfield-$m.run" 2>/dev/null
  echo "cranfield $m: $(score "$shared/eval/cranfield/qrels.tsv" "$out/cranfield-$m.run")"
done
