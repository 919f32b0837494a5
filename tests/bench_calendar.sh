#!/usr/bin/env bash
# Benchmark of the change calendar and the conflict check.
#
# Seeds 100,000 change requests with planned windows spread over four years
# (three and a half behind, half a year ahead; ten services; most target
# PROD; every state), 1,000 freezes over the same years, maintenance
# periods for two services and a limit of production changes per hour.
# Then loads, at 16 concurrent clients:
#   - the month view page (/calendar) of next month, all services, and
#     narrowed to one service;
#   - the same month through the API (GET /api/v1/calendar);
#   - the conflict check of a proposed PROD window that collides, with the
#     next free slots (GET /api/v1/calendar/conflicts);
# and runs `pgbench -S -M prepared` at the same client count on the same
# PostgreSQL as the baseline.
#
# Prints throughput and latency percentiles, each throughput as a ratio to
# pgbench's.
#
#   bash tests/bench_calendar.sh            # 15 s per run
#   DURATION=30 ROWS=100000 FREEZES=1000 bash tests/bench_calendar.sh
#   KEEP_DATABASES=1 bash tests/bench_calendar.sh   # leave the seeded database
#
# Target: p95 below 50 ms for the month view and the conflict check.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh

CLIENTS=${CLIENTS:-16}
DURATION=${DURATION:-15}
ROWS=${ROWS:-100000}
FREEZES=${FREEZES:-1000}
PORT=${PORT:-18090}
PGURL=postgres://postgres@127.0.0.1:5432
DB=cab_bench_calendar
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

echo "== seeding $ROWS change requests and $FREEZES freezes into $DB"
psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
DATABASE_URL="$PGURL/$DB" RUST_LOG=warn $CAB migrate >/dev/null
echo "bench-engineer-password" | DATABASE_URL="$PGURL/$DB" $CAB user add bench --role engineer --password-stdin >/dev/null
echo "bench-release-password" | DATABASE_URL="$PGURL/$DB" $CAB user add rita --role release_manager --password-stdin >/dev/null
psql -q -v ON_ERROR_STOP=1 "$PGURL/$DB" -v rows="$ROWS" -v freezes="$FREEZES" <<'SQL'
SET TIME ZONE 'UTC';
INSERT INTO services (name) SELECT unnest(ARRAY['payments-api','billing','ledger','edge-proxy','crm','bastion','k8s-platform','reporting','notifications','api-gateway']);
WITH words AS (
  SELECT ARRAY['Upgrade','Rotate','Patch','Fix','Add','Remove','Migrate','Tune'] AS verbs,
         ARRAY['database','certificates','kernel','proxy','cache','scheduler','queue','index','firewall','dashboard'] AS nouns,
         ARRAY['payments-api','billing','ledger','edge-proxy','crm','bastion','k8s-platform','reporting','notifications','api-gateway'] AS svcs,
         ARRAY['draft','submitted','in_assessment','in_cab_review','approved','approved','implemented','implemented','rejected','cancelled'] AS states,
         ARRAY['low','medium','high','critical'] AS risks
), rows AS (
  SELECT g,
         w.verbs[1 + g % 8] || ' ' || w.nouns[1 + (g / 8) % 10] || ' on ' || w.svcs[1 + g % 10] || ' #' || g AS title,
         w.svcs[1 + g % 10] AS svc,
         w.states[1 + (g / 10) % 10] AS state,
         (g / 3) % 4 AS rank,
         w.risks[1 + (g / 3) % 4] AS risk,
         CASE WHEN g % 4 = 0 THEN ARRAY['DEV','TEST'] ELSE ARRAY['STAGE','PROD'] END AS envs,
         -- Four years of windows, most of them behind: one every ~21 minutes.
         date_trunc('hour', now()) - interval '1278 days'
           + make_interval(mins => (g::bigint * 1461 * 24 * 60 / :rows)::int) AS wstart,
         1 + g % 3 AS hours
  FROM generate_series(1, :rows) g, words w
)
INSERT INTO changes (id, number, state, author_id, content, title, description, change_type, category, priority,
                     services, environments, window_start, window_end, risk_level, risk_rank, risk_reasons,
                     risk_version, revision, created_at, updated_at, submitted_at)
SELECT gen_random_uuid(), r.g, r.state, (SELECT id FROM users WHERE username = 'bench'),
       jsonb_build_object(
         'title', r.title, 'description', 'Planned work.', 'justification', 'Planned.',
         'change_type', 'normal', 'category', 'configuration', 'priority', 'medium',
         'services', jsonb_build_array(r.svc), 'environments', to_jsonb(r.envs),
         'implementation_plan', 'Deploy with the pipeline.', 'test_plan', 'CI suites.',
         'test_levels', jsonb_build_object('unit', true, 'integration', true, 'system', false, 'acceptance', false),
         'test_evidence', '[]'::jsonb, 'rollback_plan', 'Redeploy the previous release.',
         'window_start', to_jsonb(r.wstart), 'window_end', to_jsonb(r.wstart + make_interval(hours => r.hours)),
         'window_tz', '+00:00', 'pr_url', '', 'commit_sha', '', 'artifact_digest', '', 'contributors', '[]'::jsonb,
         'risk', jsonb_build_object('impact', 1 + r.rank, 'likelihood', 1 + r.rank,
                                    'touches_production_data', false, 'customer_facing', false,
                                    'changes_security_control', false, 'rollback_untested', false,
                                    'outside_usual_window', false)),
       r.title, 'Planned work.', 'normal', 'configuration', 'medium', ARRAY[r.svc], r.envs,
       r.wstart, r.wstart + make_interval(hours => r.hours), r.risk, r.rank, ARRAY['seeded'], 1,
       CASE WHEN r.state = 'draft' THEN 0 ELSE 1 END, r.wstart - interval '7 days', r.wstart - interval '7 days',
       CASE WHEN r.state = 'draft' THEN NULL ELSE r.wstart - interval '7 days' END
FROM rows r;
SELECT setval('change_number_seq', (SELECT max(number) FROM changes)) \gset
-- Freezes over the same four years: a day or two each, some for PROD only,
-- some for one service.
INSERT INTO freezes (id, starts_at, ends_at, reason, environments, services, created_by, created_at)
SELECT gen_random_uuid(),
       date_trunc('hour', now()) - interval '1278 days' + make_interval(hours => (g::bigint * 1461 * 24 / :freezes)::int),
       date_trunc('hour', now()) - interval '1278 days' + make_interval(hours => (g::bigint * 1461 * 24 / :freezes)::int + 24 + 24 * (g % 2)),
       'Seeded freeze #' || g,
       CASE WHEN g % 3 = 0 THEN '{}'::text[] ELSE ARRAY['prod'] END,
       CASE WHEN g % 5 = 0 THEN ARRAY['ledger'] ELSE '{}'::text[] END,
       (SELECT id FROM users WHERE username = 'rita'), now()
FROM generate_series(1, :freezes) g;
INSERT INTO maintenance_periods (id, service, weekdays, starts, minutes, created_by, created_at)
VALUES (gen_random_uuid(), 'payments-api', '{2,4}', '20:00', 240, (SELECT id FROM users WHERE username = 'rita'), now()),
       (gen_random_uuid(), 'ledger', '{1,2,3,4,5,6,7}', '18:00', 360, (SELECT id FROM users WHERE username = 'rita'), now());
INSERT INTO settings (key, value) VALUES ('calendar.production_per_hour', '3');
VACUUM ANALYZE;
SQL

echo "== starting cab serve"
DATABASE_URL="$PGURL/$DB" CAB_LISTEN="127.0.0.1:$PORT" CAB_SECRET_KEY="$SECRET" \
  CAB_DB_MAX_CONNECTIONS="$CLIENTS" RUST_LOG=warn $CAB serve >/tmp/cab-bench-calendar.log 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "cab serve did not become ready" >&2; exit 1; }

TOKEN=$(curl -fs "http://127.0.0.1:$PORT/api/v1/auth/token" -H 'content-type: application/json' \
  -d '{"username":"bench","password":"bench-engineer-password"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
jar=$(mktemp)
TMPFILES+=("$jar")
login=$(curl -fs -c "$jar" "http://127.0.0.1:$PORT/login")
csrf=$(printf '%s' "$login" | grep -o 'name="_csrf" value="[^"]*"' | head -n1 | sed 's/.*value="//; s/"$//')
curl -fs -b "$jar" -c "$jar" -o /dev/null --data-urlencode "_csrf=$csrf" --data-urlencode "username=bench" \
  --data-urlencode "password=bench-engineer-password" "http://127.0.0.1:$PORT/login"
COOKIE="cab_session=$(awk '$6 == "cab_session" {print $7}' "$jar")"

# Next month, and a proposed PROD window on payments-api next week at a
# busy hour, outside its maintenance period: it has conflicts, so the
# check also looks for the next free slots.
MONTH=$(date -u -d "$(date -u +%Y-%m-01) +1 month" +%Y-%m-%d)
FROM="${MONTH}T00:00:00Z"
TO=$(date -u -d "$MONTH +1 month" +%Y-%m-%dT00:00:00Z)
START=$(date -u -d "+7 days" +%Y-%m-%dT10:00:00Z)
END=$(date -u -d "+7 days" +%Y-%m-%dT12:00:00Z)
BASE="http://127.0.0.1:$PORT"
PAGE_URL="$BASE/calendar?view=month&date=$MONTH"
PAGE_SVC_URL="$BASE/calendar?view=month&date=$MONTH&service=payments-api"
API_URL="$BASE/api/v1/calendar?from=$FROM&to=$TO"
CHECK_URL="$BASE/api/v1/calendar/conflicts?start=$START&end=$END&services=payments-api&environments=PROD"

# Sanity: each answers 200 with what it is for. (Each answer is read whole
# first: grep -q stops at the first match, and curl, cut off mid-page,
# would fail the pipeline.)
body=$(curl -fs -H "cookie: $COOKIE" "$PAGE_URL") && grep -q 'CHG-' <<<"$body" \
  || { echo "the month page shows no change" >&2; exit 1; }
ENTRIES=$(grep -o 'href="/changes/CHG-[0-9]*"' <<<"$body" | sort -u | wc -l)
body=$(curl -fs -H "authorization: Bearer $TOKEN" "$API_URL") && grep -q '"key":"CHG-' <<<"$body" \
  || { echo "the calendar API returned no change" >&2; exit 1; }
API_ENTRIES=$(grep -o '"key":"CHG-[0-9]*"' <<<"$body" | wc -l)
body=$(curl -fs -H "authorization: Bearer $TOKEN" "$CHECK_URL") && grep -q '"free_slots":\[{' <<<"$body" \
  || { echo "the conflict check found no conflict or no free slot: $body" >&2; exit 1; }
CONFLICTS=$(grep -o '"kind":"[a-z_]*"' <<<"$body" | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')

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
run_wrk() { # name, header, url
  wrk -t2 -c"$CLIENTS" -d"${DURATION}s" --timeout 10s -s "$LUA" -H "$2" "$3" \
    | awk -v name="$1" '/^RESULT/ {print name, $2, $3, $4, $5, $6, $7}'
}

echo "== load: $CLIENTS clients, ${DURATION}s each"
wrk -t2 -c"$CLIENTS" -d3s -H "authorization: Bearer $TOKEN" "$CHECK_URL" >/dev/null  # warm-up
MONTH_PAGE=$(run_wrk month "cookie: $COOKIE" "$PAGE_URL")
MONTH_SVC=$(run_wrk month-svc "cookie: $COOKIE" "$PAGE_SVC_URL")
MONTH_API=$(run_wrk month-api "authorization: Bearer $TOKEN" "$API_URL")
CHECK=$(run_wrk conflicts "authorization: Bearer $TOKEN" "$CHECK_URL")

echo "== baseline: pgbench -S -M prepared, $CLIENTS clients"
psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS cab_pgbench WITH (FORCE)" -c "CREATE DATABASE cab_pgbench"
pgbench -q -i -s 10 "$PGURL/cab_pgbench" >/dev/null 2>&1
TPS=$(pgbench -S -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" "$PGURL/cab_pgbench" 2>/dev/null \
  | awk '/^tps/ {print $3; exit}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3g", a / b}'; }
echo
ROW='%-10s %10s %9s %9s %9s %9s %7s %16s\n'
printf "$ROW" run "req/s" "p50 ms" "p95 ms" "p99 ms" requests errors "ratio to pgbench"
for line in "$MONTH_PAGE" "$MONTH_SVC" "$MONTH_API" "$CHECK"; do
  set -- $line
  printf "$ROW" "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$(ratio "$2" "$TPS")"
done
printf '%-10s %10.1f %s\n' pgbench "$TPS" "   (pgbench -S -M prepared)"
echo
echo "rows: $ROWS changes, $FREEZES freezes; month $MONTH: $ENTRIES changes on the page, $API_ENTRIES in the API"
echo "conflict check $START–$END on payments-api in PROD: $CONFLICTS"
echo "target: p95 < 50 ms for the month view and the conflict check"
