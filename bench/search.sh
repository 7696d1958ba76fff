#!/usr/bin/env bash
# Search quality and speed: Cranfield nDCG@10 / MRR@10 / Recall@100 (scored by the collection's
# ir_eval.py) and, on the 377-page Lambda guide corpus, build time, index size, open time and
# in-process search latency. Results: docs/benchmarks.md.
#   bench/search.sh            (PROFILE=release for the shipping profile; default: profiling, no LTO)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
shared="${SHARED:-$root/../shared}"
profile="${PROFILE:-profiling}"
cargo build --profile "$profile" -p dataflow-search --example cranfield --example search_bench --example hybrid_bench
cargo build --profile "$profile" -p dataflow-embed --example embed_bench --example encoder_bench
EMBED_MODEL_DIR="$(bash infra/model/install.sh)"
export EMBED_MODEL_DIR
bin="target/$profile/examples"
run="$(mktemp)"
trap 'rm -f "$run"' EXIT
"$bin/cranfield" "$shared/eval/cranfield" "$run"
echo "cranfield: $(python3 "$shared/eval/ir_eval.py" "$shared/eval/cranfield/qrels.tsv" "$run")"
PAIRS=0 "$bin/cranfield" "$shared/eval/cranfield" "$run" 2>/dev/null
echo "cranfield, no term pairs: $(python3 "$shared/eval/ir_eval.py" "$shared/eval/cranfield/qrels.tsv" "$run")"
for i in 1 2 3; do
  echo "lambda guide run $i: $("$bin/search_bench" "$shared/corpora/aws-lambda-guide" 2>&1 | tr '\n' ' ')"
done
# Search by meaning, pinned to one core: model load, index open, query embedding, each mode's
# latency, a rebuild after one page changed, peak RSS (the embedded index is built on first use).
mkdir -p bench/out/questions
for i in 1 2; do
  echo "hybrid run $i: $(taskset -c 1 "$bin/hybrid_bench" "$shared/corpora/aws-lambda-guide" \
    bench/questions/lambda-guide.jsonl bench/out/questions/lambda-guide.dfidx 2>/dev/null | tr '\n' ' ')"
done
# The encoder against candle-transformers' BERT, query by query on one core.
echo "encoder: $(taskset -c 1 "target/$profile/examples/encoder_bench" bench/questions/lambda-guide.jsonl | tr '\n' ' ')"
# Embedding throughput on both cores (what an index build gets) and one short query at a time.
echo "embedding: $("target/$profile/examples/embed_bench" "$shared/corpora/aws-lambda-guide" 200 | tr '\n' ' ')"
# Quality by mode: bench/questions.sh.
