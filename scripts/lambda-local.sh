#!/usr/bin/env bash
# Checks the cargo-lambda workflow the README documents, against a local stack of its own:
# `cargo lambda watch --env-file infra/local/lambda.env` serves every function, `cargo lambda invoke
# --data-file events/...` works for each event in events/, and the HTTP functions answer on
# watch's /lambda-url/ paths. Runs on free ports and its own state folder (the env file is
# infra/local/lambda.env with the endpoint swapped), so it does not disturb a stack you have running.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); apiport=$(free_port); lport=$(free_port)
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" API_ADDR="127.0.0.1:$apiport"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export LOCAL_STATE="$(mktemp -d)"
watch_pid=""
cleanup() {
  if [ -n "$watch_pid" ]; then kill -- "-$watch_pid" 2>/dev/null || kill "$watch_pid" 2>/dev/null || true; fi
  infra/stack down --all >/dev/null 2>&1 || true
  rm -rf "$LOCAL_STATE"
}
trap cleanup EXIT

bash infra/tools/install.sh
export PATH="$root/.venv-tools/bin:$PATH"

infra/stack up > "$LOCAL_STATE/up.log" 2>&1 || { cat "$LOCAL_STATE/up.log"; exit 1; }
sed "s#^AWS_ENDPOINT_URL=.*#AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL#" infra/local/lambda.env > "$LOCAL_STATE/env"

# Its own process group, so cleanup also stops the functions it started.
set -m
cargo lambda watch --env-file "$LOCAL_STATE/env" -A 127.0.0.1 -P "$lport" --ignore-changes \
  > "$LOCAL_STATE/watch.log" 2>&1 &
watch_pid=$!
set +m
for _ in $(seq 1 120); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $lport), 1)" 2>/dev/null && break
  sleep 1
done

fail=0
# invoke FUNCTION EVENT PYTHON-CHECK: the check sees the response as `r`.
invoke() {
  local fn="$1" ev="$2" check="$3" out
  # The first call to a function builds it; later calls reuse the running process.
  if ! out=$(cargo lambda invoke "$fn" -A 127.0.0.1 -P "$lport" --data-file "$ev" 2>&1); then
    echo "FAIL $fn $ev: $out"; fail=1; return
  fi
  if python3 -c "import json,sys; r=json.loads(sys.argv[1]); assert $check, r" "$out" 2>"$LOCAL_STATE/check.err"; then
    echo "ok   cargo lambda invoke $fn --data-file $ev"
  else
    echo "FAIL $fn $ev: $out"; cat "$LOCAL_STATE/check.err"; fail=1
  fi
}
body='json.loads(r["body"])'
invoke etl events/s3-put.json 'r == {"processed": 1, "compacted_dates": 0, "swept": 0}'
invoke etl events/sqs-s3-put.json 'r == {"batchItemFailures": []}'
invoke analytics-api events/apigw-health.json "r['statusCode'] == 200 and $body['status'] == 'ok'"
invoke analytics-api events/apigw-summary.json "r['statusCode'] == 200 and $body['total_events'] == 500"
invoke analytics-api events/apigw-metrics.json "r['statusCode'] == 200 and len($body['metrics']) > 0"
invoke analytics-api events/apigw-pipeline-status.json "r['statusCode'] == 200 and $body['totals']['files_processed'] >= 1"
invoke analytics-api events/apigw-dashboard.json "r['statusCode'] == 200 and r['headers']['content-type'].startswith('text/html') and '<title>DataFlow</title>' in r['body'] and not r.get('isBase64Encoded')"
invoke search-api events/apigw-docs.json "r['statusCode'] == 200 and $body['index']['documents'] >= 4"
invoke search-api events/apigw-docs-search.json "r['statusCode'] == 200 and len($body['results']) > 0"
invoke search-api events/apigw-docs-context.json "r['statusCode'] == 200 and 0 < $body['used_tokens'] <= 600 and $body['passages'][0]['citation']['doc']"
invoke ingest-api events/apigw-events-post.json "r['statusCode'] == 200 and $body == {'accepted': 2, 'rejected': [{'index': 2, 'reason': 'missing_user_id'}]}"
invoke authorizer events/apigw-authorizer.json "r == {'isAuthorized': False}"
invoke index-builder events/s3-docs-put.json "r['outcome'] in ('published', 'up_to_date')"

# watch also serves HTTP functions as function URLs.
for path in analytics-api/analytics/summary "search-api/docs/search?q=backfill&k=1"; do
  if python3 -c "import json,sys,urllib.request; r=json.load(urllib.request.urlopen(sys.argv[1], timeout=60)); assert r, r" \
      "http://127.0.0.1:$lport/lambda-url/$path" 2>"$LOCAL_STATE/check.err"; then
    echo "ok   GET /lambda-url/$path"
  else
    echo "FAIL GET /lambda-url/$path"; cat "$LOCAL_STATE/check.err"; fail=1
  fi
done
if [ "$fail" != 0 ]; then tail -40 "$LOCAL_STATE/watch.log"; exit 1; fi
echo "cargo lambda watch/invoke: every event in events/ answered"
