#!/usr/bin/env bash
# Measures how long the local stack takes to heal a killed ETL attempt with no operator step:
# brings the stack up on free ports, drops a large object, `kill -9`s the dispatcher while it
# processes it, runs `infra/stack up` again (as a user would after a crash), and prints the
# seconds from the kill to exact totals. Usage: bench/takeover.sh [LINES] (default 1,000,000,
# ~160 MB).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
lines="${1:-1000000}"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export AWS_ENDPOINT_URL="http://127.0.0.1:$(free_port)" API_ADDR="127.0.0.1:$(free_port)"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export LOCAL_STATE="$(mktemp -d)"
cleanup() { infra/stack down --all >/dev/null 2>&1 || true; [ -n "${KEEP_STATE:-}" ] || rm -rf "$LOCAL_STATE"; echo "state: $LOCAL_STATE" >&2; }
trap cleanup EXIT
infra/stack up > "$LOCAL_STATE/up.log" 2>&1 || { cat "$LOCAL_STATE/up.log"; exit 1; }
data="$LOCAL_STATE/big.jsonl"
python3 bench/gen_events.py --lines "$lines" --out "$data"
.venv/bin/python - "$data" <<'PY'
import json, os, signal, subprocess, sys, time
import boto3
state = os.environ["LOCAL_STATE"]
ep = os.environ["AWS_ENDPOINT_URL"]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1")
ddb = boto3.client("dynamodb", endpoint_url=ep, region_name="us-east-1")
path = sys.argv[1]
# Exact totals: what one uninterrupted run of the same core gives.
once = subprocess.run(["target/debug/dataflow", "etl", "--input", path, "--output", os.path.join(state, "once"),
                       "--aggregates-only"], check=True, capture_output=True, text=True)
once = json.loads(once.stdout.strip().splitlines()[-1])
good, bad = once["accepted"], once["rejected"]
def pipeline():
    item = ddb.get_item(TableName="dataflow-checkpoints", Key={"pk": {"S": "pipeline"}}, ConsistentRead=True).get("Item", {})
    return {k: int(v["N"]) for k, v in item.items() if "N" in v}
base = pipeline()
s3.upload_file(path, "dataflow-raw", "incoming/big.jsonl")
def state_of_big():
    for page in ddb.get_paginator("scan").paginate(TableName="dataflow-checkpoints"):
        for it in page["Items"]:
            if it.get("source_key", {}).get("S") == "incoming/big.jsonl":
                return it["state"]["S"]
while state_of_big() != "in_progress":
    time.sleep(0.05)
time.sleep(1.0)  # well into the object
pid = int(open(os.path.join(state, "dispatcher.pid")).read())
os.kill(pid, signal.SIGKILL)
killed = time.time()
print(f"killed the dispatcher (pid {pid}) while it processed incoming/big.jsonl")
subprocess.run(["infra/stack", "up"], check=True, stdout=open(os.path.join(state, "up-again.log"), "w"), stderr=subprocess.STDOUT)
restarted = time.time() - killed
while True:
    p = pipeline()
    if p.get("files_processed", 0) == base.get("files_processed", 0) + 1:
        break
    if time.time() - killed > int(os.environ.get("TAKEOVER_LIMIT", "600")):
        raise SystemExit(f"no takeover within 600 s: {p}")
    time.sleep(0.2)
healed = time.time() - killed
accepted = p["events_accepted"] - base.get("events_accepted", 0)
rejected = p["events_rejected"] - base.get("events_rejected", 0)
assert (accepted, rejected) == (good, bad), (accepted, rejected, good, bad)
print(f"infra/stack up again after {restarted:.1f} s; exact totals ({accepted} accepted, {rejected} rejected; "
      f"as one uninterrupted run) {healed:.1f} s after kill -9")
PY
