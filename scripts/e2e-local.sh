#!/usr/bin/env bash
# End-to-end test of the local stack, as a user meets it: bring it up with `infra/stack up`,
# drop a file with a plain S3 client (boto3), see the API report it, stop it. Runs on its own
# ports and state folder so it does not disturb a stack you have running.
#   scripts/e2e-local.sh                 moto serves S3, DynamoDB and SQS
#   scripts/e2e-local.sh --localstack    real LocalStack serves S3 and SQS, moto DynamoDB; fails
#                                        (never falls back) when LocalStack cannot be installed
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
apiport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" API_ADDR="127.0.0.1:$apiport"
mode=()
if [ "${1:-}" = --localstack ]; then
  mode=(--localstack)
  export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
fi
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export LOCAL_STATE="$(mktemp -d)"
# The stack's own compaction + rollup run (hourly in AWS, every minute by default locally) every
# 10 s here, so the test sees it happen without waiting a minute.
export COMPACT_SECONDS=10
cleanup() { infra/stack down --all >/dev/null 2>&1 || true; [ -n "${KEEP_STATE:-}" ] || rm -rf "$LOCAL_STATE"; }
trap cleanup EXIT
infra/stack up "${mode[@]}" > "$LOCAL_STATE/up.log" 2>&1 || { cat "$LOCAL_STATE/up.log"; exit 1; }
.venv/bin/python - <<'PY'
import json, os, subprocess, time, urllib.request, urllib.error, boto3
api = "http://" + os.environ["API_ADDR"]
key = open(os.path.join(os.environ["LOCAL_STATE"], "api-key")).read().strip()
def call(path, key=key, method="GET", data=None, headers=None):
    req = urllib.request.Request(api + path, method=method, data=data, headers={**(headers or {}), "x-api-key": key})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
def get(path):
    status, body = call(path)
    assert status == 200, (path, status, body)
    return body

# API keys, as the template's default: /health is open; everything else needs a key whose scope
# allows the route; the answers use the API's JSON error shape.
assert call("/health", key="")[0] == 200
status, body = call("/analytics/summary", key="")
assert (status, body["error"]) == (401, "missing_api_key"), (status, body)
status, body = call("/analytics/summary", key="dfk_" + "0" * 64)
assert (status, body["error"]) == (401, "invalid_api_key"), (status, body)
def dataflow(*args):
    return subprocess.run(["target/debug/dataflow", *args], check=True, capture_output=True, text=True).stdout.strip()
ingest_key = dataflow("keys", "create", "--name", "e2e-ingest", "--scope", "ingest")
status, body = call("/analytics/summary", key=ingest_key)
assert (status, body["error"]) == (403, "insufficient_scope"), (status, body)
status, body = call("/events", key=ingest_key, method="POST", data=b"", headers={"content-type": "application/x-ndjson"})
assert (status, body["error"]) == (400, "no_events"), (status, body)
dataflow("keys", "revoke", "e2e-ingest")
status, body = call("/events", key=ingest_key, method="POST", data=b"{}", headers={"content-type": "application/json"})
assert (status, body["error"]) == (401, "revoked_api_key"), (status, body)
listed = json.loads(dataflow("keys", "list"))
assert any(k["name"] == "e2e-ingest" and k["revoked"] for k in listed) and ingest_key not in json.dumps(listed), listed
print("e2e: API keys: open /health, 401 missing/unknown/revoked, 403 wrong scope, keys never listed")

before = get("/analytics/summary")
assert before["total_events"] == 500, before
lines = [json.dumps({"user_id": f"e2e-{i}", "event_type": "e2e_check", "timestamp": "2024-03-05T12:00:00Z"}) for i in range(7)]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
s3.put_object(Bucket="dataflow-raw", Key="incoming/e2e check.jsonl", Body=("\n".join(lines) + "\nnot json\n").encode())
deadline = time.time() + 60
while time.time() < deadline:
    s = get("/analytics/summary")
    if s["events_by_type"].get("e2e_check") == 7:
        break
    time.sleep(0.5)
else:
    raise SystemExit(f"the dropped file never showed up: {s}")
assert s["total_events"] == 507 and s["files_processed"] == 2, s
m = get("/analytics/metrics?event_type=e2e_check")
assert m["metrics"] == [{"event_date": "2024-03-05", "event_type": "e2e_check", "event_count": 7, "unique_users": 7}], m
print("e2e: file dropped with boto3 was processed and reported by the API")

# The front door: POST /events (JSON Lines, gzip) -> delivery stream -> raw bucket -> ETL.
import gzip
posted = [json.dumps({"user_id": f"post-{i}", "event_type": "e2e_posted", "timestamp": "2024-03-06T08:00:00Z"}) for i in range(3)]
status, ans = call("/events", method="POST", data=gzip.compress(("\n".join(posted) + "\n{broken\n").encode()),
    headers={"content-type": "application/x-ndjson", "content-encoding": "gzip"})
assert ans == {"accepted": 3, "rejected": [{"index": 3, "reason": "invalid_json"}]}, ans
deadline = time.time() + 60
while time.time() < deadline:
    s = get("/analytics/summary")
    if s["events_by_type"].get("e2e_posted") == 3:
        break
    time.sleep(0.5)
else:
    raise SystemExit(f"events sent with POST /events never showed up: {s}")
assert s["total_events"] == 510 and s["files_processed"] == 3, s
print("e2e: events sent with POST /events went through the delivery stream and the ETL")

# Search: the index built from docs/ answers, and a Markdown file dropped in the docs prefix is
# searchable after the index builder republishes (no restart).
docs = get("/docs")
assert docs["index"]["documents"] >= 4 and docs["index"]["format_version"] == 2, docs["index"]
assert docs["index"]["vectors"]["name"] == "all-MiniLM-L6-v2", docs["index"]
# Hybrid by default: every hit carries both rankings' word on it.
r = get("/docs/search?q=reprocess+an+object&k=3")
assert r["mode"] == "hybrid" and r["fallback"] is None, r
assert r["results"] and r["results"][0]["doc"] == "operations.md", r
assert r["results"][0]["scores"]["lexical_rank"] and r["results"][0]["scores"]["semantic_rank"], r
assert get("/docs/search?q=reprocess+an+object&k=3&mode=lexical")["mode"] == "lexical"
c = get("/docs/context?q=reprocess+an+object&max_tokens=400")
assert c["passages"] and c["used_tokens"] <= 400 and c["passages"][0]["citation"]["doc"] == "operations.md", c
print("e2e: hybrid search and /docs/context answer from the embedded index")
s3.put_object(Bucket="dataflow-index", Key="docs/e2e/zeppelin.md", Body=b"# Zeppelin runbook\n\nInflate the zeppelin before the quarterly demo.\n")
deadline = time.time() + 60
while time.time() < deadline:
    r = get("/docs/search?q=zeppelin&k=1")
    if r["results"] and r["results"][0]["doc"] == "e2e/zeppelin.md":
        break
    time.sleep(0.5)
else:
    raise SystemExit("a Markdown file dropped in the docs prefix never became searchable")
assert r["results"][0]["doc"] == "e2e/zeppelin.md", r
print("e2e: docs/ index served; a dropped Markdown file became searchable")
# An upload through the API, as a user would with curl: stored, rebuilt, searchable.
status, up = call("/docs/e2e/blimp.html", method="PUT",
    data=b"<html><head><title>Blimp runbook</title></head><body><h1>Blimp</h1><p>Moor the blimp at dusk.</p></body></html>")
assert up["status"] == "stored", up
deadline = time.time() + 60
while time.time() < deadline:
    r = get("/docs/search?q=moor+blimp&k=1")
    if r["results"] and r["results"][0]["doc"] == "e2e/blimp.html":
        break
    time.sleep(0.5)
else:
    raise SystemExit("a document uploaded with PUT /docs/{path} never became searchable")
assert r["results"][0]["doc"] == "e2e/blimp.html" and r["results"][0]["title"] == "Blimp runbook", r
print("e2e: a document uploaded with PUT /docs/{path} became searchable")
PY
# The hourly run, as the stack runs it on its own (the dispatcher, every COMPACT_SECONDS):
# compaction, then the monthly rollups, which the API reads from then on with the same answers.
.venv/bin/python - <<'PY'
import json, os, time, urllib.request, boto3
api = "http://" + os.environ["API_ADDR"]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
deadline = time.time() + 60
catalog = None
while time.time() < deadline:
    try:
        catalog = json.load(s3.get_object(Bucket="dataflow-lake", Key="aggregates/daily/_rollup/catalog.json")["Body"])
        if list(catalog["months"]) == ["2024-03"]:
            break
    except s3.exceptions.NoSuchKey:
        pass
    time.sleep(0.5)
else:
    raise SystemExit(f"the stack did not roll March up on its own within 60 s: {catalog}")
key = open(os.path.join(os.environ["LOCAL_STATE"], "api-key")).read().strip()
deadline = time.time() + 10  # the API revalidates every CACHE_SECONDS (2 s locally)
while True:
    s = json.load(urllib.request.urlopen(urllib.request.Request(api + "/analytics/summary", headers={"x-api-key": key}), timeout=5))
    if s["total_events"] == 510 and s["events_by_type"]["e2e_check"] == 7:
        break
    assert time.time() < deadline, s
    time.sleep(0.5)
print("e2e: the stack compacted and rolled up on its own; the API's answers are unchanged")
PY
# The dashboard in headless Chromium against this stack: KPIs equal the API's numbers, charts
# drawn, search highlighted, a bad key refused, no console errors; screenshots under target/.
if [ "${#mode[@]}" -eq 0 ]; then
  bash scripts/browser/install.sh
  DASHBOARD_URL="http://$API_ADDR/" API_KEY="$(cat "$LOCAL_STATE/api-key")" SCREENSHOTS="$root/target/screenshots" \
    node scripts/browser/dashboard.mjs > "$LOCAL_STATE/browser.log" 2>&1 || { cat "$LOCAL_STATE/browser.log"; echo "the dashboard test failed" >&2; exit 1; }
  grep '^browser:' "$LOCAL_STATE/browser.log"
fi
# The OpenAPI description against the running API: every operation, writes included, with
# generated requests (schema-valid and not) and every check (status codes and response shapes
# as documented, no 5xx, schema-violating requests refused) but one: a schema-valid request may
# still be refused when the answer depends on data or content (an event_type the lake has never
# seen, a query of stopwords only, an event outside the accepted time window, a .pdf whose bytes
# are not a PDF), which the descriptions say. At least 1,000 generated cases.
if [ "${#mode[@]}" -eq 0 ]; then
  .venv/bin/st run "http://$API_ADDR/openapi.json" --url "http://$API_ADDR" --checks all \
    -H "x-api-key: $(cat "$LOCAL_STATE/api-key")" \
    --exclude-checks positive_data_acceptance \
    --max-examples 100 --seed 1 --generation-database none \
    > "$LOCAL_STATE/fuzz.log" 2>&1 || { cat "$LOCAL_STATE/fuzz.log"; echo "the API does not match /openapi.json" >&2; exit 1; }
  cases=$(grep -Eo '[0-9]+ generated' "$LOCAL_STATE/fuzz.log" | head -1 | grep -Eo '[0-9]+')
  [ "${cases:-0}" -ge 1000 ] || { cat "$LOCAL_STATE/fuzz.log"; echo "only ${cases:-0} generated cases, want 1,000 or more" >&2; exit 1; }
  echo "e2e: /openapi.json matches the API ($cases generated requests, writes included, 0 failures)"
fi
infra/stack doctor --api "$API_ADDR" > "$LOCAL_STATE/doctor.log" 2>&1 || { cat "$LOCAL_STATE/doctor.log"; exit 1; }
if [ "${#mode[@]}" -gt 0 ]; then
  # The object store port's conformance suite against LocalStack's S3 (moto's runs in cargo test).
  DATAFLOW_TEST_ENDPOINT="$AWS_ENDPOINT_URL" cargo test -q -p dataflow-aws --test conformance s3_store_conforms \
    > "$LOCAL_STATE/conformance.log" 2>&1 || { cat "$LOCAL_STATE/conformance.log"; echo "S3 on LocalStack does not conform" >&2; exit 1; }
  echo "e2e: the object store conformance suite passes on LocalStack's S3"
fi
# A restart appends to the logs (a crashed process's log survives the next start).
infra/stack down > /dev/null
infra/stack up "${mode[@]}" > "$LOCAL_STATE/up-again.log" 2>&1 || { cat "$LOCAL_STATE/up-again.log"; exit 1; }
starts=$(grep -c '^=== .* start: ' "$LOCAL_STATE/dispatcher.log")
[ "$starts" = 2 ] || { echo "dispatcher.log holds $starts start(s), want 2: it was truncated" >&2; exit 1; }
label=""
if [ "${#mode[@]}" -gt 0 ]; then
  st="$(infra/stack status)"
  grep -q '^localstack: running' <<< "$st" || { echo "LocalStack was not the emulator: $st" >&2; exit 1; }
  label=" (LocalStack)"
fi
echo "e2e local stack$label: 1 passed, 0 failed"
