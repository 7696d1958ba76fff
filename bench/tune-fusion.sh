#!/usr/bin/env bash
# Grid over the fusion settings on the `tune` half of the Lambda-guide questions only: neither
# the `test` half nor Cranfield (both reported by bench/questions.sh) is looked at. Prints one
# line per setting with the tune half's nDCG@10 and MRR@10.
#   bench/tune-fusion.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
shared="${SHARED:-$root/../shared}"
profile="${PROFILE:-profiling}"
EMBED_MODEL_DIR="$(bash infra/model/install.sh)"
export EMBED_MODEL_DIR
cargo build --quiet --profile "$profile" -p dataflow-search --example questions --example cranfield
bin="target/$profile/examples"
out="bench/out/questions"
mkdir -p "$out/grid"
scores() { python3 "$shared/eval/ir_eval.py" "$1" "$2" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["ndcg@10"], d["mrr@10"])'; }
for k in ${RRF_KS:-10 30 60 100}; do
  for w in ${W_SEMS:-0.5 0.75 1 1.5 2}; do
    for c in ${CANDS:-50}; do
      RRF_K=$k W_SEM=$w CANDIDATES=$c INDEX_CACHE="$out/lambda-guide.dfidx" "$bin/questions" \
        "$shared/corpora/aws-lambda-guide" bench/questions/lambda-guide.jsonl tune "$out/grid" 2>/dev/null
      echo "rrf_k=$k w_sem=$w candidates=$c tune ndcg@10 mrr@10: $(scores "$out/grid/qrels.tsv" "$out/grid/hybrid.run")"
    done
  done
done
