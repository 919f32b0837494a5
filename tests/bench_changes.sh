#!/usr/bin/env bash
# Benchmark of the change list: seeds 100,000 change requests, then loads
# the HTML list (/changes) and the API (GET /api/v1/changes), each with a
# filter and a search term, at 16 concurrent clients, and runs
# `pgbench -S -M prepared` at the same client count on the same PostgreSQL
# as the baseline. Prints throughput and latency percentiles, and the ratio
# of each to pgbench's throughput.
#
#   bash tests/bench_changes.sh            # 15 s per run
#   DURATION=30 bash tests/bench_changes.sh
#
# Targets: p95 below 50 ms, and throughput at least a third of pgbench's.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh

CLIENTS=${CLIENTS:-16}
DURATION=${DURATION:-15}
ROWS=${ROWS:-100000}
PORT=${PORT:-18080}
PGURL=postgres://postgres@127.0.0.1:5432
DB=cab_bench
export SQLX_OFFLINE=true
export PGOPTIONS="-c client_min_messages=warning"

cab_ensure_postgres
command -v wrk >/dev/null 2>&1 || { cab_as_root apt-get update -qq; DEBIAN_FRONTEND=noninteractive cab_as_root apt-get install -y -qq wrk >/dev/null; }
command -v pgbench >/dev/null 2>&1 || { echo "pgbench is missing (postgresql-contrib / postgresql-client)" >&2; exit 1; }

echo "== building (release)"
cargo build --release --locked --bin cab -q
CAB=target/release/cab

echo "== seeding $ROWS change requests into $DB"
psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
DATABASE_URL="$PGURL/$DB" RUST_LOG=warn $CAB migrate >/dev/null
echo "bench-engineer-password" | DATABASE_URL="$PGURL/$DB" $CAB user add bench --role engineer --password-stdin >/dev/null
psql -q "$PGURL/$DB" -v rows="$ROWS" <<'SQL'
INSERT INTO services (name) SELECT unnest(ARRAY['payments-api','billing','ledger','edge-proxy','crm','bastion','k8s-platform','reporting','notifications','api-gateway']);
WITH words AS (
  SELECT ARRAY['Upgrade','Rotate','Patch','Fix','Add','Remove','Migrate','Tune'] AS verbs,
         ARRAY['database','certificates','kernel','proxy','cache','scheduler','queue','index','firewall','dashboard',
               'replica','backup','logging','metrics','alerting','gateway','storage','cluster','worker','pipeline'] AS nouns,
         ARRAY['payments-api','billing','ledger','edge-proxy','crm','bastion','k8s-platform','reporting','notifications','api-gateway'] AS svcs,
         ARRAY['draft','submitted','submitted','submitted','withdrawn','cancelled'] AS states,
         ARRAY['low','medium','high','critical'] AS risks,
         ARRAY['standard','normal','normal','emergency'] AS types,
         ARRAY['feature','bug_fix','security_patch','configuration','infrastructure','dependency_update'] AS cats
), rows AS (
  SELECT g,
         w.verbs[1 + g % 8] || ' ' || w.nouns[1 + (g / 8) % 20] || ' on ' || w.svcs[1 + (g / 160) % 10] || ' #' || g AS title,
         'Routine work on the ' || w.nouns[1 + (g / 3) % 20] || ' of ' || w.svcs[1 + g % 10] || ', planned with the team.' AS description,
         w.svcs[1 + (g / 160) % 10] AS svc,
         w.states[1 + g % 6] AS state,
         (g % 4) AS rank,
         w.risks[1 + g % 4] AS risk,
         w.types[1 + g % 4] AS ctype,
         w.cats[1 + g % 6] AS cat,
         now() - make_interval(mins => g) AS at
  FROM generate_series(1, :rows) g, words w
)
INSERT INTO changes (id, number, state, author_id, content, title, description, change_type, category, priority,
                     services, environments, window_start, window_end, risk_level, risk_rank, risk_reasons,
                     risk_version, revision, created_at, updated_at, submitted_at)
SELECT gen_random_uuid(), r.g, r.state, (SELECT id FROM users WHERE username = 'bench'),
       jsonb_build_object(
         'title', r.title, 'description', r.description, 'justification', 'Planned.',
         'change_type', r.ctype, 'category', r.cat, 'priority', 'medium',
         'services', jsonb_build_array(r.svc), 'environments', jsonb_build_array('STAGE', 'PROD'),
         'implementation_plan', 'Deploy with the pipeline.', 'test_plan', 'CI suites.',
         'test_levels', jsonb_build_object('unit', true, 'integration', true, 'system', false, 'acceptance', false),
         'test_evidence', '[]'::jsonb, 'rollback_plan', 'Redeploy the previous release.',
         'window_start', to_jsonb(r.at + interval '30 days'), 'window_end', to_jsonb(r.at + interval '30 days 1 hour'),
         'window_tz', '+00:00', 'pr_url', '', 'commit_sha', '', 'artifact_digest', '', 'contributors', '[]'::jsonb,
         'risk', jsonb_build_object('impact', 1 + r.rank, 'likelihood', 1 + r.rank,
                                    'touches_production_data', false, 'customer_facing', false,
                                    'changes_security_control', false, 'rollback_untested', false,
                                    'outside_usual_window', false)),
       r.title, r.description, r.ctype, r.cat, 'medium', ARRAY[r.svc], ARRAY['STAGE','PROD'],
       r.at + interval '30 days', r.at + interval '30 days 1 hour', r.risk, r.rank, ARRAY['seeded'], 1,
       CASE WHEN r.state = 'draft' THEN 0 ELSE 1 END, r.at, r.at,
       CASE WHEN r.state = 'draft' THEN NULL ELSE r.at END
FROM rows r;
SELECT setval('change_number_seq', (SELECT max(number) FROM changes)) \gset
VACUUM ANALYZE;
SQL

echo "== starting cab serve"
DATABASE_URL="$PGURL/$DB" CAB_LISTEN="127.0.0.1:$PORT" CAB_SECRET_KEY="bench-secret-key-bench-secret-key-0123456789" \
  CAB_DB_MAX_CONNECTIONS="$CLIENTS" RUST_LOG=warn $CAB serve >/tmp/cab-bench-server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.2; done

TOKEN=$(curl -fs "http://127.0.0.1:$PORT/api/v1/auth/token" -H 'content-type: application/json' \
  -d '{"username":"bench","password":"bench-engineer-password"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
JAR=$(mktemp)
LOGIN=$(curl -fs -c "$JAR" "http://127.0.0.1:$PORT/login")
CSRF=$(printf '%s' "$LOGIN" | grep -o 'name="_csrf" value="[^"]*"' | head -n1 | sed 's/.*value="//; s/"$//')
curl -fs -b "$JAR" -c "$JAR" -o /dev/null --data-urlencode "_csrf=$CSRF" --data-urlencode username=bench \
  --data-urlencode password=bench-engineer-password "http://127.0.0.1:$PORT/login"
COOKIE="cab_session=$(awk '$6 == "cab_session" {print $7}' "$JAR")"
rm -f "$JAR"

QUERY="state=submitted&q=database"
API_URL="http://127.0.0.1:$PORT/api/v1/changes?$QUERY"
HTML_URL="http://127.0.0.1:$PORT/changes?$QUERY"
# Sanity: both answer 200 with rows.
curl -fs -H "authorization: Bearer $TOKEN" "$API_URL" | grep -q '"key":"CHG-' || { echo "API returned no rows" >&2; exit 1; }
curl -fs -H "cookie: $COOKIE" "$HTML_URL" | grep -q 'CHG-' || { echo "page returned no rows" >&2; exit 1; }

LUA=$(mktemp --suffix=.lua)
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
  wrk -t2 -c"$CLIENTS" -d"${DURATION}s" -s "$LUA" -H "$2" "$3" | awk -v name="$1" '/^RESULT/ {print name, $2, $3, $4, $5, $6, $7}'
}

echo "== load: $CLIENTS clients, ${DURATION}s each"
wrk -t2 -c"$CLIENTS" -d3s -H "authorization: Bearer $TOKEN" "$API_URL" >/dev/null  # warm-up
API=$(run_wrk api "authorization: Bearer $TOKEN" "$API_URL")
HTML=$(run_wrk html "cookie: $COOKIE" "$HTML_URL")
rm -f "$LUA"

echo "== baseline: pgbench -S -M prepared, $CLIENTS clients"
psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS cab_pgbench WITH (FORCE)" -c "CREATE DATABASE cab_pgbench"
pgbench -q -i -s 10 "$PGURL/cab_pgbench" >/dev/null 2>&1
TPS=$(pgbench -S -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" "$PGURL/cab_pgbench" 2>/dev/null \
  | awk '/^tps/ {print $3; exit}')
psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS cab_pgbench WITH (FORCE)"

# Where the time goes: the list's own SQL (as the server sends it for this
# filter) through pgbench, without HTTP, sessions or rendering.
echo "== the list query alone, through pgbench"
SQLFILE=$(mktemp --suffix=.sql)
cat >"$SQLFILE" <<'SQL'
SELECT c.id, c.number, c.title, c.state, c.change_type, c.category, c.priority, c.risk_level, c.risk_rank,
       c.services, c.environments, u.username AS author, c.window_start, c.updated_at
FROM changes c JOIN users u ON u.id = c.author_id
WHERE true AND c.state = 'submitted' AND c.search @@ websearch_to_tsquery('english', 'database')
ORDER BY c.number DESC LIMIT 51;
SQL
SQL_TPS=$(pgbench -n -M prepared -f "$SQLFILE" -c "$CLIENTS" -j 2 -T "$DURATION" "$PGURL/$DB" 2>/dev/null \
  | awk '/^tps/ {print $3; exit}')
rm -f "$SQLFILE"

echo
printf '%-6s %10s %9s %9s %9s %9s %7s %14s\n' run "req/s" "p50 ms" "p95 ms" "p99 ms" requests errors "ratio to pgbench"
for line in "$API" "$HTML"; do
  set -- $line
  ratio=$(awk -v a="$2" -v b="$TPS" 'BEGIN {printf "%.3f", a / b}')
  printf '%-6s %10s %9s %9s %9s %9s %7s %14s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$ratio"
done
printf '%-6s %10.1f %52s %14s\n' "sql" "$SQL_TPS" "(list query alone)" "$(awk -v a="$SQL_TPS" -v b="$TPS" 'BEGIN {printf "%.3f", a / b}')"
printf '%-6s %10.1f %52s\n' pgbench "$TPS" "(pgbench -S -M prepared)"
echo
echo "targets: p95 < 50 ms; ratio >= 0.333 (rows: $ROWS, query: $QUERY)"
