#!/usr/bin/env bash
# ETL throughput and memory benchmark against peers doing the same job on the same file, in the
# same run. Results: a Markdown table on stdout (copy into docs/benchmarks.md).
#
#   bench/run.sh                 # 2M events (~320 MB), 3 runs each
#   RUNS=5 LINES=1000000 bench/run.sh
#   PAIRS=15 bench/run.sh        # more alternating dataflow/DuckDB pairs for the ratio (default 9)
#   BIG=1 bench/run.sh           # also peak RSS of the full path on a ~2.2 GB input
#
# Peers (from bench/requirements.txt, installed into bench/.venv): DuckDB (read_json +
# GROUP BY + approx_count_distinct -> partitioned Parquet), the seed's PySpark job (local[*]),
# and Python polars (fixed schema; on a copy without malformed lines, which fail a polars read).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
RUNS="${RUNS:-3}"
LINES="${LINES:-2000000}"
data="bench/data/events-${LINES}.jsonl"
out="bench/out"
mkdir -p bench/data "$out"

if [ ! -x bench/.venv/bin/python ]; then python3 -m venv bench/.venv; fi
bench/.venv/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
[ -f "$data" ] || python3 bench/gen_events.py --lines "$LINES" --out "$data"
clean="${data%.jsonl}.clean.jsonl"
[ -f "$clean" ] || grep '^{"event_id"' "$data" > "$clean"
if [ -z "${DATAFLOW_BIN:-}" ]; then cargo build --release --quiet -p dataflow-cli; fi
df="${DATAFLOW_BIN:-$root/target/release/dataflow}"
py="$root/bench/.venv/bin/python"
mb=$(( $(stat -c %s "$data") / 1000000 ))

# measure NAME CMD...: median wall seconds and max peak RSS over $RUNS runs (after one warm-up).
measure() {
  local name="$1"; shift
  local walls=() rss=0
  rm -rf "$out/tmp"; "$@" >/dev/null 2>&1 || { echo "| $name | failed | | | |"; return; }
  for _ in $(seq 1 "$RUNS"); do
    rm -rf "$out/tmp"
    /usr/bin/time -f "%e %M" -o "$out/time.txt" "$@" >/dev/null 2>&1
    read -r wall kb < "$out/time.txt"
    walls+=("$wall"); [ "$kb" -gt "$rss" ] && rss="$kb"
  done
  local median
  median=$(printf '%s\n' "${walls[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '| %s | %.2f | %.0f | %d | %s |\n' "$name" "$median" "$(echo "$mb / $median" | bc -l)" $((rss / 1024)) "$(printf '%s ' "${walls[@]}")"
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m); input: $data ($mb MB, $LINES lines)"
echo
echo "| job | median wall s | MB/s | peak RSS MB | runs (s) |"
echo "|---|---|---|---|---|"
measure "dataflow, aggregates only" "$df" etl --input "$data" --output "$out/tmp" --aggregates-only
measure "dataflow, full (aggregates + curated events + rejected)" "$df" etl --input "$data" --output "$out/tmp"
measure "DuckDB $($py -c 'import duckdb; print(duckdb.__version__)')" "$py" bench/peers/duckdb_agg.py "$data" "$out/tmp"
measure "Python polars $($py -c 'import polars; print(polars.__version__)') (clean copy)" "$py" bench/peers/polars_agg.py "$clean" "$out/tmp"
measure "PySpark $($py -c 'import pyspark; print(pyspark.__version__)') local[*]" "$py" bench/peers/pyspark_agg.py "$data" "$out/tmp"

# The headline comparison, robust to a shared machine's drift: dataflow's aggregate path and
# DuckDB in alternating runs, the wall-time ratio taken pair by pair.
PAIRS="${PAIRS:-9}"
ratios=()
for _ in $(seq 1 "$PAIRS"); do
  rm -rf "$out/tmp"
  /usr/bin/time -f "%e" -o "$out/a.txt" "$df" etl --input "$data" --output "$out/tmp" --aggregates-only >/dev/null 2>&1
  rm -rf "$out/tmp"
  /usr/bin/time -f "%e" -o "$out/b.txt" "$py" bench/peers/duckdb_agg.py "$data" "$out/tmp" >/dev/null 2>&1
  ratios+=("$(echo "$(cat "$out/a.txt") / $(cat "$out/b.txt")" | bc -l)")
done
printf '%s\n' "${ratios[@]}" | sort -n | awk -v n="$PAIRS" '{a[NR]=$1} END {
  m = a[int((NR+1)/2)]
  printf "\npaired, %d alternating runs: dataflow aggregates / DuckDB wall time, median %.3f (min %.3f, max %.3f): dataflow at %.2fx DuckDB throughput\n", n, m, a[1], a[NR], 1/m }'

if [ "${BIG:-0}" = 1 ]; then
  big="bench/data/events-big.jsonl"
  if [ ! -f "$big" ]; then for _ in 1 2 3 4 5 6 7; do cat "$data"; done > "$big"; fi
  bigmb=$(( $(stat -c %s "$big") / 1000000 ))
  rm -rf "$out/tmp"
  /usr/bin/time -f "%e %M" -o "$out/time.txt" "$df" etl --input "$big" --output "$out/tmp" >/dev/null 2>&1
  read -r wall kb < "$out/time.txt"
  echo
  echo "large input: $bigmb MB, full path: ${wall} s, peak RSS $((kb / 1024)) MB"
fi
rm -rf "$out/tmp"
