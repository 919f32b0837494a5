#!/usr/bin/env bash
# Benchmark of the change list and the CAB queue.
#
# The list: seeds 100,000 change requests, then loads the HTML list
# (/changes) and the API (GET /api/v1/changes), each with a filter and a
# search term, at 16 concurrent clients, and runs `pgbench -S -M prepared`
# at the same client count on the same PostgreSQL as the baseline, plus the
# list's own SQL through pgbench.
#
# The CAB queue: seeds a second database with 500 changes under review
# (submitted, in assessment and in CAB review; every risk level, emergency
# changes among them, with security assessments and CAB votes that leave
# each one still pending), then loads GET /api/v1/queues/cab and the /cab
# page as a CAB member, and runs the queue as one SQL statement through
# pgbench.
#
# Prints throughput and latency percentiles, each throughput as a ratio to
# pgbench's, and as a ratio to the SQL the request stands on.
#
#   bash tests/bench_changes.sh            # 15 s per run
#   DURATION=30 bash tests/bench_changes.sh
#   KEEP_DATABASES=1 bash tests/bench_changes.sh   # leave the seeded databases
#
# Targets: p95 below 50 ms, and throughput at least a third of pgbench's;
# the API list at least 0.6 of its own SQL; the CAB queue's p95 below 50 ms
# with 500 changes under review.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh

CLIENTS=${CLIENTS:-16}
DURATION=${DURATION:-15}
ROWS=${ROWS:-100000}
PORT=${PORT:-18080}
QUEUE_PORT=$((PORT + 1))
QUEUE_ROWS=${QUEUE_ROWS:-500}
# A queue request takes far longer than wrk's default 2 s timeout allows
# for as long as it is computed row by row; a timed-out request would be
# left out of the percentiles.
QUEUE_TIMEOUT=${QUEUE_TIMEOUT:-60s}
PGURL=postgres://postgres@127.0.0.1:5432
DB=cab_bench
QDB=cab_bench_queue
SECRET="bench-secret-key-bench-secret-key-0123456789"
# Built from the committed query metadata, unless told to check the queries
# against a live database (SQLX_OFFLINE=false DATABASE_URL=...).
export SQLX_OFFLINE=${SQLX_OFFLINE:-true}
export PGOPTIONS="-c client_min_messages=warning"

SERVER=
QSERVER=
TMPFILES=()
cleanup() {
  local pid
  for pid in $SERVER $QSERVER; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -f "${TMPFILES[@]}"
  if [ -z "${KEEP_DATABASES:-}" ]; then
    psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
      -c "DROP DATABASE IF EXISTS $QDB WITH (FORCE)" -c "DROP DATABASE IF EXISTS cab_pgbench WITH (FORCE)" \
      >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

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

serve() { # database, port, log; the server's pid is then in $!
  DATABASE_URL="$PGURL/$1" CAB_LISTEN="127.0.0.1:$2" CAB_SECRET_KEY="$SECRET" \
    CAB_DB_MAX_CONNECTIONS="$CLIENTS" RUST_LOG=warn $CAB serve >"$3" 2>&1 &
}

wait_ready() { # port
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "cab serve on port $1 did not become ready" >&2
  return 1
}

api_token() { # port, username, password
  curl -fs "http://127.0.0.1:$1/api/v1/auth/token" -H 'content-type: application/json' \
    -d "{\"username\":\"$2\",\"password\":\"$3\"}" | sed 's/.*"access_token":"\([^"]*\)".*/\1/'
}

web_cookie() { # port, username, password: signs in through the form
  local jar login csrf
  jar=$(mktemp)
  login=$(curl -fs -c "$jar" "http://127.0.0.1:$1/login")
  csrf=$(printf '%s' "$login" | grep -o 'name="_csrf" value="[^"]*"' | head -n1 | sed 's/.*value="//; s/"$//')
  curl -fs -b "$jar" -c "$jar" -o /dev/null --data-urlencode "_csrf=$csrf" --data-urlencode "username=$2" \
    --data-urlencode "password=$3" "http://127.0.0.1:$1/login"
  echo "cab_session=$(awk '$6 == "cab_session" {print $7}' "$jar")"
  rm -f "$jar"
}

echo "== starting cab serve"
serve "$DB" "$PORT" /tmp/cab-bench-server.log
SERVER=$!
wait_ready "$PORT"

TOKEN=$(api_token "$PORT" bench bench-engineer-password)
COOKIE=$(web_cookie "$PORT" bench bench-engineer-password)

QUERY="state=submitted&q=database"
API_URL="http://127.0.0.1:$PORT/api/v1/changes?$QUERY"
HTML_URL="http://127.0.0.1:$PORT/changes?$QUERY"
# Sanity: both answer 200 with rows. (Each answer is read whole first: grep
# -q stops at the first match, and curl, cut off mid-page, would fail the
# pipeline.)
body=$(curl -fs -H "authorization: Bearer $TOKEN" "$API_URL") && grep -q '"key":"CHG-' <<<"$body" \
  || { echo "API returned no rows" >&2; exit 1; }
body=$(curl -fs -H "cookie: $COOKIE" "$HTML_URL") && grep -q 'CHG-' <<<"$body" \
  || { echo "page returned no rows" >&2; exit 1; }

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

run_wrk() { # name, header, url[, timeout]
  wrk -t2 -c"$CLIENTS" -d"${DURATION}s" --timeout "${4:-2s}" -s "$LUA" -H "$2" "$3" \
    | awk -v name="$1" '/^RESULT/ {print name, $2, $3, $4, $5, $6, $7}'
}

echo "== load: $CLIENTS clients, ${DURATION}s each"
wrk -t2 -c"$CLIENTS" -d3s -H "authorization: Bearer $TOKEN" "$API_URL" >/dev/null  # warm-up
API=$(run_wrk api "authorization: Bearer $TOKEN" "$API_URL")
HTML=$(run_wrk html "cookie: $COOKIE" "$HTML_URL")

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
TMPFILES+=("$SQLFILE")
cat >"$SQLFILE" <<'SQL'
SELECT c.id, c.number, c.title, c.state, c.change_type, c.category, c.priority, c.risk_level, c.risk_rank,
       c.services, c.environments, u.username AS author, c.window_start, c.updated_at
FROM changes c JOIN users u ON u.id = c.author_id
WHERE true AND c.state = 'submitted' AND c.search @@ websearch_to_tsquery('english', 'database')
ORDER BY c.number DESC LIMIT 51;
SQL
SQL_TPS=$(pgbench -n -M prepared -f "$SQLFILE" -c "$CLIENTS" -j 2 -T "$DURATION" "$PGURL/$DB" 2>/dev/null \
  | awk '/^tps/ {print $3; exit}')

# The CAB queue, on a database of its own: 500 changes under review, with
# the rows the app itself writes on the way there (the first revision at
# submission, a second after an edit, the quorum policy fixed at
# submission, assessments and votes on the current revision). Votes are
# placed only where they leave the change pending, as the app would have
# decided it otherwise.
echo "== seeding $QUEUE_ROWS changes under review into $QDB"
psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $QDB WITH (FORCE)"
DATABASE_URL="$PGURL/$QDB" RUST_LOG=warn $CAB migrate >/dev/null
add_user() { # username, role, password
  echo "$3" | DATABASE_URL="$PGURL/$QDB" $CAB user add "$1" --role "$2" --password-stdin >/dev/null
}
add_user erin engineer bench-engineer-password
add_user carol cab_member bench-cab-member-password
add_user carl cab_member bench-cab-member-password
add_user sam security_reviewer bench-security-password
psql -q -v ON_ERROR_STOP=1 "$PGURL/$QDB" -v rows="$QUEUE_ROWS" <<'SQL'
SET TIME ZONE 'UTC';
INSERT INTO services (name) SELECT unnest(ARRAY['payments-api','billing','ledger','edge-proxy','crm','bastion','k8s-platform','reporting','notifications','api-gateway']);
-- One row per change: what it is and who did what when. rank 0..3 is
-- low..critical; answers impact = likelihood = rank + 1 give exactly that
-- level under the risk rules.
CREATE TEMP TABLE seed AS
WITH w AS (
  SELECT ARRAY['Upgrade','Rotate','Patch','Fix','Add','Remove','Migrate','Tune'] AS verbs,
         ARRAY['database','certificates','kernel','proxy','cache','scheduler','queue','index','firewall','dashboard'] AS nouns,
         ARRAY['payments-api','billing','ledger','edge-proxy','crm','bastion','k8s-platform','reporting','notifications','api-gateway'] AS svcs,
         ARRAY['submitted','in_assessment','in_cab_review'] AS states,
         ARRAY['low','medium','high','critical'] AS risks,
         ARRAY['feature','bug_fix','security_patch','configuration','infrastructure','dependency_update'] AS cats
)
SELECT g, gen_random_uuid() AS id,
       w.verbs[1 + g % 8] || ' ' || w.nouns[1 + (g / 8) % 10] || ' on ' || w.svcs[1 + g % 10] || ' #' || g AS title,
       'Routine work on the ' || w.nouns[1 + (g / 3) % 10] || ' of ' || w.svcs[1 + g % 10] || ', planned with the team.' AS description,
       w.svcs[1 + g % 10] AS svc,
       w.cats[1 + g % 6] AS cat,
       w.states[1 + g % 3] AS state,
       (g / 3) % 4 AS rank,
       w.risks[1 + (g / 3) % 4] AS risk,
       CASE WHEN g % 5 = 0 THEN 'emergency' ELSE 'normal' END AS ctype,
       CASE WHEN g % 7 = 0 THEN 2 ELSE 1 END AS revision,
       date_trunc('minute', now()) - make_interval(hours => g) AS submitted,
       date_trunc('hour', now()) + make_interval(days => 1 + g % 45, hours => g % 24) AS wstart
FROM generate_series(1, :rows) g, w;
ALTER TABLE seed ADD COLUMN need_approvals int, ADD COLUMN need_assessment boolean, ADD COLUMN accepted boolean,
                 ADD COLUMN carol_votes boolean, ADD COLUMN carl_votes boolean,
                 ADD COLUMN first_content jsonb, ADD COLUMN content jsonb;
-- What the default quorum policy asks of each (an emergency change of high
-- or critical risk needs two approvals).
UPDATE seed SET
  need_approvals = CASE WHEN ctype = 'emergency' THEN CASE WHEN rank >= 2 THEN 2 ELSE 1 END
                        ELSE (ARRAY[1, 2, 2, 3])[rank + 1] END,
  need_assessment = ctype = 'emergency' OR rank >= 2,
  accepted = state = 'in_cab_review';
UPDATE seed SET carol_votes = ctype = 'normal' AND rank = 3 AND g % 2 = 0;
UPDATE seed SET carl_votes = (g / 2) % 3 = 0
  AND ((CASE WHEN carol_votes THEN 2 ELSE 1 END) < need_approvals OR (need_assessment AND NOT accepted));
UPDATE seed SET first_content = jsonb_build_object(
  'title', title, 'description', description, 'justification', 'Planned maintenance.',
  'change_type', ctype, 'category', cat, 'priority', CASE WHEN ctype = 'emergency' THEN 'urgent' ELSE 'medium' END,
  'services', jsonb_build_array(svc), 'environments', jsonb_build_array('STAGE', 'PROD'),
  'implementation_plan', 'Deploy with the pipeline.', 'test_plan', 'CI suites.',
  'test_levels', jsonb_build_object('unit', true, 'integration', true, 'system', false, 'acceptance', false),
  'test_evidence', jsonb_build_array('https://ci.example.com/runs/' || g), 'rollback_plan', 'Redeploy the previous release.',
  'window_start', to_jsonb(wstart), 'window_end', to_jsonb(wstart + interval '1 hour'),
  'window_tz', '+00:00', 'pr_url', '', 'commit_sha', '', 'artifact_digest', '', 'contributors', '[]'::jsonb,
  'risk', jsonb_build_object('impact', rank + 1, 'likelihood', rank + 1,
                             'touches_production_data', false, 'customer_facing', false,
                             'changes_security_control', false, 'rollback_untested', false,
                             'outside_usual_window', false));
UPDATE seed SET content = CASE WHEN revision = 2
  THEN first_content || jsonb_build_object('test_plan', 'CI suites, then a canary on STAGE.') ELSE first_content END;

-- Timeline of each, from its submission S: edited at S+10m (revision 2),
-- taken into assessment at S+20m, assessed at S+40m, votes at S+50m/S+55m.
INSERT INTO changes (id, number, state, author_id, content, title, description, change_type, category, priority,
                     services, environments, window_start, window_end, risk_level, risk_rank, risk_reasons,
                     risk_version, revision, created_at, updated_at, submitted_at, quorum_policy)
SELECT s.id, s.g, s.state, (SELECT id FROM users WHERE username = 'erin'), s.content, s.title, s.description,
       s.ctype, s.cat, s.content ->> 'priority', ARRAY[s.svc], ARRAY['STAGE','PROD'],
       s.wstart, s.wstart + interval '1 hour', s.risk, s.rank,
       ARRAY[format('impact %s × likelihood %s = %s: %s', s.rank + 1, s.rank + 1, (s.rank + 1) * (s.rank + 1), s.risk)]
         || CASE WHEN s.rank = 3 THEN ARRAY['severe impact'] ELSE ARRAY[]::text[] END,
       1, s.revision, s.submitted - interval '1 day',
       s.submitted + CASE s.state WHEN 'submitted' THEN make_interval(mins => 10 * (s.revision - 1))
                                  WHEN 'in_assessment' THEN interval '20 minutes' ELSE interval '40 minutes' END,
       s.submitted,
       '{"low": {"approvals": 1, "assessment": false},
         "medium": {"approvals": 2, "assessment": false},
         "high": {"approvals": 2, "assessment": true},
         "critical": {"approvals": 3, "assessment": true},
         "emergency": {"approvals": 1, "assessment": true}}'::jsonb
FROM seed s;
SELECT setval('change_number_seq', (SELECT max(number) FROM changes)) \gset

INSERT INTO change_revisions (change_id, number, content, diff, risk_level, created_at, created_by)
SELECT s.id, 1, s.first_content, '[]'::jsonb, s.risk, s.submitted, (SELECT id FROM users WHERE username = 'erin')
FROM seed s
UNION ALL
SELECT s.id, 2, s.content,
       jsonb_build_array(jsonb_build_object('field', 'test_plan', 'before', s.first_content ->> 'test_plan',
                                            'after', s.content ->> 'test_plan')),
       s.risk, s.submitted + interval '10 minutes', (SELECT id FROM users WHERE username = 'erin')
FROM seed s WHERE s.revision = 2;

-- An accepting assessment (with conditions on every other one) for each
-- change in CAB review, at the engineer's level.
INSERT INTO change_assessments (id, change_id, revision, assessor_id, assessor_username, assessor_roles,
                                content, decision, assessed_level, lowers_risk, created_at)
SELECT gen_random_uuid(), s.id, s.revision, u.id, u.username, u.roles,
       jsonb_build_object(
         'data_classification', (ARRAY['public','internal','confidential','restricted'])[1 + s.g % 4],
         'security_implications', 'Touches ' || s.svc || '; authentication and authorisation are unchanged.',
         'sast', jsonb_build_object('required', true, 'evidence', 'https://ci.example.com/sast/' || s.g, 'justification', ''),
         'dast', jsonb_build_object('required', false, 'evidence', '', 'justification', 'No exposed endpoint changes.'),
         'pentest', jsonb_build_object('required', false, 'evidence', '', 'justification', 'Routine change.'),
         'residual_risk', 'Low once the rollback plan is ready.',
         'assessed_level', s.risk, 'lowering_justification', '',
         'decision', CASE WHEN s.g % 2 = 0 THEN 'accept_with_conditions' ELSE 'accept' END,
         'conditions', CASE WHEN s.g % 2 = 0 THEN jsonb_build_array('Deploy outside business hours.') ELSE '[]'::jsonb END),
       CASE WHEN s.g % 2 = 0 THEN 'accept_with_conditions' ELSE 'accept' END, s.risk, false,
       s.submitted + interval '40 minutes'
FROM seed s, users u WHERE u.username = 'sam' AND s.accepted;

INSERT INTO change_votes (id, change_id, revision, voter_id, voter_username, voter_roles, choice, comment, created_at)
SELECT gen_random_uuid(), s.id, s.revision, u.id, u.username, u.roles, 'approve', 'Fine by me.',
       s.submitted + CASE u.username WHEN 'carl' THEN interval '50 minutes' ELSE interval '55 minutes' END
FROM seed s, users u
WHERE (u.username = 'carl' AND s.carl_votes) OR (u.username = 'carol' AND s.carol_votes);

SELECT count(*) AS changes,
       count(*) FILTER (WHERE ctype = 'emergency') AS emergency,
       count(*) FILTER (WHERE accepted) AS assessed,
       count(*) FILTER (WHERE carl_votes) AS carl_votes,
       count(*) FILTER (WHERE carol_votes) AS carol_votes,
       count(*) FILTER (WHERE revision = 2) AS edited
FROM seed \gset seeded_
\echo seeded :seeded_changes changes: :seeded_emergency emergency, :seeded_assessed assessed, :seeded_carl_votes + :seeded_carol_votes votes, :seeded_edited edited once
VACUUM ANALYZE;
SQL

echo "== starting a second cab serve for the queue"
serve "$QDB" "$QUEUE_PORT" /tmp/cab-bench-queue-server.log
QSERVER=$!
wait_ready "$QUEUE_PORT"
QTOKEN=$(api_token "$QUEUE_PORT" carol bench-cab-member-password)
QCOOKIE=$(web_cookie "$QUEUE_PORT" carol bench-cab-member-password)
QAPI_URL="http://127.0.0.1:$QUEUE_PORT/api/v1/queues/cab"
QHTML_URL="http://127.0.0.1:$QUEUE_PORT/cab"

# Sanity: every seeded change is in the queue, each still needs something
# (none would have been decided), and a change of each state opens.
QJSON=$(mktemp --suffix=.json)
TMPFILES+=("$QJSON")
curl -fs --max-time 120 -H "authorization: Bearer $QTOKEN" "$QAPI_URL" >"$QJSON" || { echo "queue API failed" >&2; exit 1; }
n=$(grep -o '"key":"CHG-' "$QJSON" | wc -l || true)
[ "$n" -eq "$QUEUE_ROWS" ] || { echo "the queue API lists $n changes, not $QUEUE_ROWS" >&2; exit 1; }
if grep -q '"still_needed":\[\]' "$QJSON"; then echo "a seeded change would already be decided" >&2; exit 1; fi
grep -q '"my_vote":"approve"' "$QJSON" || { echo "the queue shows none of carol's votes" >&2; exit 1; }
n=$(curl -fs --max-time 120 -H "cookie: $QCOOKIE" "$QHTML_URL" | grep -o '<td class="needs">' | wc -l || true)
[ "$n" -eq "$QUEUE_ROWS" ] || { echo "the /cab page lists $n changes, not $QUEUE_ROWS" >&2; exit 1; }
for state in submitted in_assessment in_cab_review; do
  id=$(psql -Atq "$PGURL/$QDB" -c "SELECT id FROM changes WHERE state = '$state' AND revision = 2 ORDER BY number LIMIT 1")
  curl -fs -o /dev/null -H "cookie: $QCOOKIE" "http://127.0.0.1:$QUEUE_PORT/changes/$id" \
    || { echo "the page of a change $state does not open" >&2; exit 1; }
  curl -fs -o /dev/null -H "authorization: Bearer $QTOKEN" "http://127.0.0.1:$QUEUE_PORT/api/v1/changes/$id/approvals" \
    || { echo "the approvals of a change $state do not load" >&2; exit 1; }
done

echo "== load: CAB queue, $QUEUE_ROWS under review, $CLIENTS clients, ${DURATION}s each"
wrk -t2 -c"$CLIENTS" -d3s --timeout "$QUEUE_TIMEOUT" -H "authorization: Bearer $QTOKEN" "$QAPI_URL" >/dev/null  # warm-up
sleep 3
QAPI=$(run_wrk q-api "authorization: Bearer $QTOKEN" "$QAPI_URL" "$QUEUE_TIMEOUT")
sleep 3  # let requests wrk left in flight finish before the next run
QHTML=$(run_wrk q-html "cookie: $QCOOKIE" "$QHTML_URL" "$QUEUE_TIMEOUT")

# The queue's facts as one statement: the change, its current assessment,
# its current ballots with each voter's standing now, and the caller's vote.
echo "== the queue as one query, through pgbench"
CAROL_ID=$(psql -Atq "$PGURL/$QDB" -c "SELECT id FROM users WHERE username = 'carol'")
QSQLFILE=$(mktemp --suffix=.sql)
TMPFILES+=("$QSQLFILE")
cat >"$QSQLFILE" <<'SQL'
WITH q AS (
  SELECT c.id, c.number, c.title, c.state, c.change_type, c.risk_level, c.risk_rank, c.revision,
         c.window_start, c.submitted_at, u.username AS author,
         coalesce(c.quorum_policy, (SELECT value FROM settings WHERE key = 'quorum_policy')) AS policy
  FROM changes c JOIN users u ON u.id = c.author_id
  WHERE c.state IN ('submitted', 'in_assessment', 'in_cab_review')
  ORDER BY coalesce(c.window_start, 'infinity'::timestamptz), c.risk_rank DESC, c.number
  LIMIT 500)
SELECT q.*,
       a.assessor_id, a.decision AS assessment_decision, a.assessed_level,
       (ua.id IS NOT NULL AND ua.disabled_at IS NULL) AS assessor_active, ua.roles AS assessor_roles,
       coalesce(b.ballots, '[]'::jsonb) AS ballots,
       mv.choice AS my_vote
FROM q
LEFT JOIN LATERAL (SELECT * FROM change_assessments a
                   WHERE a.change_id = q.id AND a.revision = q.revision AND a.superseded_at IS NULL
                   ORDER BY a.created_at DESC, a.id DESC LIMIT 1) a ON true
LEFT JOIN users ua ON ua.id = a.assessor_id
LEFT JOIN LATERAL (SELECT jsonb_agg(jsonb_build_object('voter', v.voter_id, 'choice', v.choice,
                          'active', uv.id IS NOT NULL AND uv.disabled_at IS NULL, 'roles', uv.roles)
                          ORDER BY v.created_at, v.id) AS ballots
                   FROM change_votes v LEFT JOIN users uv ON uv.id = v.voter_id
                   WHERE v.change_id = q.id AND v.revision = q.revision AND v.superseded_at IS NULL) b ON true
LEFT JOIN LATERAL (SELECT v.choice FROM change_votes v
                   WHERE v.change_id = q.id AND v.revision = q.revision AND v.voter_id = :me
                     AND v.superseded_at IS NULL LIMIT 1) mv ON true
ORDER BY coalesce(q.window_start, 'infinity'::timestamptz), q.risk_rank DESC, q.number;
SQL
n=$(sed "s/:me/'$CAROL_ID'/" "$QSQLFILE" | psql -Atq "$PGURL/$QDB" | wc -l)
[ "$n" -eq "$QUEUE_ROWS" ] || { echo "the queue query returns $n rows, not $QUEUE_ROWS" >&2; exit 1; }
QSQL_TPS=$(pgbench -n -M prepared -D me="$CAROL_ID" -f "$QSQLFILE" -c "$CLIENTS" -j 2 -T "$DURATION" "$PGURL/$QDB" 2>/dev/null \
  | awk '/^tps/ {print $3; exit}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3g", a / b}'; }  # 3 significant digits
echo
ROW='%-9s %10s %9s %9s %9s %9s %7s %16s %17s\n'
printf "$ROW" run "req/s" "p50 ms" "p95 ms" "p99 ms" requests errors "ratio to pgbench" "ratio to its SQL"
for line in "$API sql" "$HTML sql" "$QAPI queue-sql" "$QHTML queue-sql"; do
  set -- $line
  case $8 in sql) base=$SQL_TPS ;; *) base=$QSQL_TPS ;; esac
  printf "$ROW" "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$(ratio "$2" "$TPS")" "$(ratio "$2" "$base")"
done
printf '%-9s %10.1f %-48s %16s\n' sql "$SQL_TPS" "   (the list query alone)" "$(ratio "$SQL_TPS" "$TPS")"
printf '%-9s %10.1f %-48s %16s\n' queue-sql "$QSQL_TPS" "   (the queue as one query)" "$(ratio "$QSQL_TPS" "$TPS")"
printf '%-9s %10.1f %s\n' pgbench "$TPS" "   (pgbench -S -M prepared)"
echo
echo "targets: p95 < 50 ms; ratio to pgbench >= 0.333 (rows: $ROWS, query: $QUERY)"
echo "targets: api list >= 0.6 x its SQL, p95 < 50 ms; CAB queue p95 < 50 ms at $QUEUE_ROWS under review"
