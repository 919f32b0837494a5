#!/usr/bin/env bash
# Benchmark of the measures of change: the metrics page (/measures) and
# GET /api/v1/metrics.
#
# Seeds ROWS change requests over the last two years (default 100,000), each
# deployed to DEV, STAGE and PROD (three deployments a change: 300,000), with
# failures, rollbacks, reported commits, emergency changes and reviews
# (tests/bench_metrics_seed.sql). Then loads, at 16 concurrent clients:
#   - the page for the last 90 days by week, all services;
#   - the same through the API;
#   - the API for the last year by month;
#   - the API for the last 90 days for one service;
#   - the API with a different 90-day period (over two years) and service
#     on every request, so that hardly any answer was read before ("cold");
#   - the same with all services every time ("cold-all": each read covers
#     every production deployment of its period);
# and runs `pgbench -S -M prepared` at the same client count on the same
# PostgreSQL as the baseline. The first four repeat one filter: after the
# first read, the server answers from the figures it read, until a refresh
# derives anything; the cold run measures the reads themselves.
#
# Prints throughput and latency percentiles, each throughput as a ratio to
# pgbench's.
#
#   bash tests/bench_metrics.sh            # 15 s per run
#   DURATION=30 ROWS=100000 bash tests/bench_metrics.sh
#   KEEP_DATABASES=1 bash tests/bench_metrics.sh   # leave the seeded database
#
# Before the load, the seeded records are derived into the measures' rows
# (the server's background refresh), and the time that took is printed.
#
# Target: p95 below 200 ms for the page and the API over the last 90 days.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh

CLIENTS=${CLIENTS:-16}
DURATION=${DURATION:-15}
ROWS=${ROWS:-100000}
PORT=${PORT:-18091}
PGURL=postgres://postgres@127.0.0.1:5432
DB=cab_bench_metrics
SECRET="bench-secret-key-bench-secret-key-0123456789"
export SQLX_OFFLINE=${SQLX_OFFLINE:-true}
export PGOPTIONS="-c client_min_messages=warning"

SERVER=
TMPFILES=()
cleanup() {
  if [ -n "$SERVER" ]; then
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
  rm -f "${TMPFILES[@]}"
  if [ -z "${KEEP_DATABASES:-}" ]; then
    psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
      -c "DROP DATABASE IF EXISTS cab_pgbench WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

cab_ensure_postgres
command -v wrk >/dev/null 2>&1 || { cab_as_root apt-get update -qq; DEBIAN_FRONTEND=noninteractive cab_as_root apt-get install -y -qq wrk >/dev/null; }
command -v pgbench >/dev/null 2>&1 || { echo "pgbench is missing (postgresql-contrib / postgresql-client)" >&2; exit 1; }

echo "== building (release)"
cargo build --release --locked --bin cab -q
CAB=target/release/cab

echo "== seeding $ROWS changes and $((ROWS * 3)) deployments into $DB"
psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
DATABASE_URL="$PGURL/$DB" RUST_LOG=warn $CAB migrate >/dev/null
echo "bench-engineer-password" | DATABASE_URL="$PGURL/$DB" $CAB user add bench --role engineer --password-stdin >/dev/null
echo "bench-release-password" | DATABASE_URL="$PGURL/$DB" $CAB user add rita --role release_manager --password-stdin >/dev/null
psql -q -v ON_ERROR_STOP=1 "$PGURL/$DB" -v rows="$ROWS" -f tests/bench_metrics_seed.sql >/dev/null

echo "== starting cab serve"
DATABASE_URL="$PGURL/$DB" CAB_LISTEN="127.0.0.1:$PORT" CAB_SECRET_KEY="$SECRET" \
  CAB_DB_MAX_CONNECTIONS="$CLIENTS" RUST_LOG=warn $CAB serve >/tmp/cab-bench-metrics.log 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "cab serve did not become ready" >&2; exit 1; }

echo "== deriving the measures of the seeded changes"
started=$(date +%s.%N)
for _ in $(seq 1 600); do
  left=$(psql -qtA "$PGURL/$DB" -c "SELECT count(*) FROM measure_pending")
  [ "$left" = 0 ] && break
  sleep 0.5
done
[ "$left" = 0 ] || { echo "the measures were not derived in 5 minutes ($left changes left)" >&2; exit 1; }
DERIVE_S=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
psql -q "$PGURL/$DB" -c "VACUUM ANALYZE measure_deployments, measure_decisions, measure_suspected_incidents"

TOKEN=$(curl -fs "http://127.0.0.1:$PORT/api/v1/auth/token" -H 'content-type: application/json' \
  -d '{"username":"bench","password":"bench-engineer-password"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
jar=$(mktemp)
TMPFILES+=("$jar")
login=$(curl -fs -c "$jar" "http://127.0.0.1:$PORT/login")
csrf=$(printf '%s' "$login" | grep -o 'name="_csrf" value="[^"]*"' | head -n1 | sed 's/.*value="//; s/"$//')
curl -fs -b "$jar" -c "$jar" -o /dev/null --data-urlencode "_csrf=$csrf" --data-urlencode "username=bench" \
  --data-urlencode "password=bench-engineer-password" "http://127.0.0.1:$PORT/login"
COOKIE="cab_session=$(awk '$6 == "cab_session" {print $7}' "$jar")"

BASE="http://127.0.0.1:$PORT"
YEAR_FROM=$(date -u -d "-364 days" +%Y-%m-%d)
PAGE_URL="$BASE/measures"
API_URL="$BASE/api/v1/metrics"
YEAR_URL="$BASE/api/v1/metrics?from=$YEAR_FROM&bucket=month"
SVC_URL="$BASE/api/v1/metrics?service=ledger"

# Sanity: each answers 200 with figures. (Each answer is read whole first:
# grep -q stops at the first match, and curl, cut off mid-page, would fail
# the pipeline.)
body=$(curl -fs -H "cookie: $COOKIE" "$PAGE_URL") && grep -q 'id="chart-change-failure-rate-title"' <<<"$body" \
  || { echo "the metrics page shows no chart" >&2; exit 1; }
body=$(curl -fs -H "authorization: Bearer $TOKEN" "$API_URL") && grep -q '"change_failure_rate"' <<<"$body" \
  || { echo "the metrics API returned no figures" >&2; exit 1; }
TOTAL=$(python3 -c 'import json,sys; t=json.load(sys.stdin)["total"]; print("%d successful deployments, failure rate %.3f, lead time p50 %.1f h" % (t["deployment_frequency"]["deployments"], t["change_failure_rate"]["rate"], t["lead_time"]["p50_hours"]))' <<<"$body")
LUA=$(mktemp --suffix=.lua)
TMPFILES+=("$LUA")
cat >"$LUA" <<'LUA'
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.2f %.2f %.2f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.requests, errors))
end
LUA
run_wrk() { # name, header, url[, script]
  wrk -t2 -c"$CLIENTS" -d"${DURATION}s" --timeout 10s -s "${4:-$LUA}" -H "$2" "$3" \
    | awk -v name="$1" '/^RESULT/ {print name, $2, $3, $4, $5, $6, $7}'
}
# The cold run: 700 periods of 90 days over the last two years, times the
# ten services and all: 7,700 filters.
COLD_LUA=$(mktemp --suffix=.lua)
TMPFILES+=("$COLD_LUA")
{
  printf 'local periods = {'
  for i in $(seq 0 699); do
    printf '"from=%s&to=%s",' "$(date -u -d "-$((i + 120)) days" +%Y-%m-%d)" "$(date -u -d "-$((i + 31)) days" +%Y-%m-%d)"
  done
  printf '}\nlocal services = {"", "&service=payments-api", "&service=billing", "&service=ledger", "&service=edge-proxy", "&service=crm", "&service=bastion", "&service=k8s-platform", "&service=reporting", "&service=notifications", "&service=api-gateway"}\n'
  cat <<'LUA'
request = function()
  local path = "/api/v1/metrics?" .. periods[math.random(#periods)] .. services[math.random(#services)]
  return wrk.format("GET", path)
end
LUA
  cat "$LUA"
} >"$COLD_LUA"
COLD_ALL_LUA=$(mktemp --suffix=.lua)
TMPFILES+=("$COLD_ALL_LUA")
sed 's/services\[math.random(#services)\]/""/' "$COLD_LUA" >"$COLD_ALL_LUA"

echo "== load: $CLIENTS clients, ${DURATION}s each"
wrk -t2 -c"$CLIENTS" -d3s -H "authorization: Bearer $TOKEN" "$API_URL" >/dev/null  # warm-up
PAGE=$(run_wrk page "cookie: $COOKIE" "$PAGE_URL")
API=$(run_wrk api "authorization: Bearer $TOKEN" "$API_URL")
YEAR=$(run_wrk api-year "authorization: Bearer $TOKEN" "$YEAR_URL")
SVC=$(run_wrk api-svc "authorization: Bearer $TOKEN" "$SVC_URL")
COLD=$(run_wrk api-cold "authorization: Bearer $TOKEN" "$API_URL" "$COLD_LUA")
COLD_ALL=$(run_wrk cold-all "authorization: Bearer $TOKEN" "$API_URL" "$COLD_ALL_LUA")

echo "== baseline: pgbench -S -M prepared, $CLIENTS clients"
psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS cab_pgbench WITH (FORCE)" -c "CREATE DATABASE cab_pgbench"
pgbench -q -i -s 10 "$PGURL/cab_pgbench" >/dev/null 2>&1
TPS=$(pgbench -S -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" "$PGURL/cab_pgbench" 2>/dev/null \
  | awk '/^tps/ {print $3; exit}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3g", a / b}'; }
echo
ROW='%-10s %10s %9s %9s %9s %9s %7s %16s\n'
printf "$ROW" run "req/s" "p50 ms" "p95 ms" "p99 ms" requests errors "ratio to pgbench"
for line in "$PAGE" "$API" "$YEAR" "$SVC" "$COLD" "$COLD_ALL"; do
  set -- $line
  printf "$ROW" "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$(ratio "$2" "$TPS")"
done
printf '%-10s %10.1f %s\n' pgbench "$TPS" "   (pgbench -S -M prepared)"
echo
echo "rows: $ROWS changes, $((ROWS * 3)) deployments; last 90 days: $TOTAL"
echo "measures derived from the seeded records in ${DERIVE_S} s (background refresh)"
echo "page and api: last 90 days by week, all services; api-year: last year by month; api-svc: 90 days, service ledger"
echo "api-cold: a different 90-day period and service on every request (7,700 filters); cold-all: a different period, all services (700 filters)"
echo "target: p95 < 200 ms for the page and the API over the last 90 days"
