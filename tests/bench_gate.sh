#!/usr/bin/env bash
# Benchmark of the deployment gate, as pipelines drive it.
#
# Seeds a database with one draft change per pipeline (DEV takes a draft and
# needs no approval; every change names the same artifact) and a pipeline
# service account allowed to deploy to DEV, starts `cab serve` as a user
# would, then runs 16 concurrent pipelines, each looping over the round
# trip: ask the gate for its own change on DEV (POST /api/v1/deployments),
# report started with the token, report succeeded. Prints round trips and
# requests per second, p50/p95/p99 of the round trip, and `pgbench -S -M
# prepared` at the same client count on the same PostgreSQL, with the ratio
# of the requests' throughput to pgbench's.
#
# Then `cab gate verify`, offline against the saved key set: the time of one
# process checking one token, and the time per token of one process checking
# many (one a line on standard input).
#
#   bash tests/bench_gate.sh            # 15 s of load
#   DURATION=30 bash tests/bench_gate.sh
#   KEEP_DATABASES=1 bash tests/bench_gate.sh   # leave the seeded database
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh

CLIENTS=${CLIENTS:-16}
DURATION=${DURATION:-15}
PORT=${PORT:-18090}
# Processes timed one token each, and tokens checked by one process.
VERIFY_RUNS=${VERIFY_RUNS:-100}
VERIFY_TOKENS=${VERIFY_TOKENS:-20000}
PGURL=postgres://postgres@127.0.0.1:5432
DB=cab_bench_gate
SECRET="bench-secret-key-bench-secret-key-0123456789"
DIGEST="sha256:$(printf 'b%.0s' $(seq 1 64))"
# Built from the committed query metadata, unless told to check the queries
# against a live database (SQLX_OFFLINE=false DATABASE_URL=...).
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
command -v pgbench >/dev/null 2>&1 || { echo "pgbench is missing (postgresql-contrib / postgresql-client)" >&2; exit 1; }

echo "== building (release)"
cargo build --release --locked --bin cab -q
CAB=target/release/cab

echo "== seeding $DB: $CLIENTS pipelines' changes, a pipeline account"
psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
DATABASE_URL="$PGURL/$DB" RUST_LOG=warn $CAB migrate >/dev/null
add_user() { # username, role, password
  echo "$3" | DATABASE_URL="$PGURL/$DB" $CAB user add "$1" --role "$2" --password-stdin >/dev/null
}
add_user erin engineer bench-engineer-password
add_user adam admin bench-admin-password
DATABASE_URL="$PGURL/$DB" $CAB user add deploy-bot --role engineer --service >/dev/null
BOT_ID=$(psql -Atq "$PGURL/$DB" -c "SELECT id FROM users WHERE username = 'deploy-bot'")

echo "== starting cab serve"
DATABASE_URL="$PGURL/$DB" CAB_LISTEN="127.0.0.1:$PORT" CAB_SECRET_KEY="$SECRET" \
  CAB_DB_MAX_CONNECTIONS="$CLIENTS" RUST_LOG=warn $CAB serve >/tmp/cab-bench-gate-server.log 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "cab serve did not become ready" >&2; exit 1; }

# The load generator: Python's standard library, one thread and one
# keep-alive connection per pipeline. It also sets the pipeline up through
# the API (where it may deploy, its token, the changes) and writes the
# tokens it was given, for `cab gate verify` below.
LOAD=$(mktemp --suffix=.py)
TOKENS=$(mktemp)
KEYS=$(mktemp --suffix=.json)
TMPFILES+=("$LOAD" "$TOKENS" "$KEYS")
cat >"$LOAD" <<'PY'
import http.client, json, os, statistics, sys, threading, time

port, clients, duration = int(os.environ["PORT"]), int(os.environ["CLIENTS"]), float(os.environ["DURATION"])
digest, bot, tokens_file = os.environ["DIGEST"], os.environ["BOT_ID"], os.environ["TOKENS"]


def call(conn, method, path, token=None, body=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, (json.loads(data) if data else None)


def expect(status, answer, want, what):
    if status != want:
        sys.exit(f"{what}: {status} {answer}")
    return answer


setup = http.client.HTTPConnection("127.0.0.1", port)
login = lambda u, p: expect(*call(setup, "POST", "/api/v1/auth/token", body={"username": u, "password": p}), 200, "sign-in")["access_token"]
adam, erin = login("adam", "bench-admin-password"), login("erin", "bench-engineer-password")
expect(*call(setup, "PUT", f"/api/v1/users/{bot}/environments", adam, {"environments": ["dev"]}), 200, "environments")
pipeline = expect(*call(setup, "POST", f"/api/v1/users/{bot}/tokens", adam, {"name": "bench"}), 201, "token")["secret"]
changes = []
for i in range(clients):
    change = {
        "title": f"Roll out edge proxy build {i}", "description": "Ship the new edge proxy build.",
        "justification": "Benchmark.", "type": "normal", "category": "configuration", "priority": "medium",
        "services": ["edge-proxy"], "environments": ["DEV"], "implementation_plan": "With the pipeline.",
        "test_plan": "CI suites.", "test_levels": {"unit": True, "integration": True, "system": False, "acceptance": False},
        "test_evidence": [], "rollback_plan": "Redeploy the previous build.",
        "links": {"artifact_digest": digest}, "risk": {"impact": 1, "likelihood": 1},
    }
    changes.append(expect(*call(setup, "POST", "/api/v1/changes", erin, change), 201, "change")["key"])

lock = threading.Lock()
rounds, errors, kept = [], [0], []


def pipeline_loop(change, until, record):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    ask = {"change": change, "revision": 0, "environment": "dev",
           "artifact": {"name": "edge-proxy", "version": "1", "digest": digest},
           "pipeline": {"provider": "bench", "run_id": change}}
    while time.monotonic() < until:
        t0 = time.perf_counter()
        status, answer = call(conn, "POST", "/api/v1/deployments", pipeline, ask)
        if status != 201:
            with lock:
                errors[0] += 1
            continue
        events = f"/api/v1/deployments/{answer['deployment']['id']}/events"
        s1, _ = call(conn, "POST", events, pipeline, {"state": "started", "token": answer["token"]})
        s2, _ = call(conn, "POST", events, pipeline, {"state": "succeeded"}) if s1 == 200 else (0, None)
        took = time.perf_counter() - t0
        with lock:
            if (s1, s2) == (200, 200):
                if record:
                    rounds.append(took)
                if len(kept) < 1000:
                    kept.append(answer["token"])
            else:
                errors[0] += 1


def run(seconds, record):
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=pipeline_loop, args=(c, until, record)) for c in changes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


run(min(3.0, duration), False)  # warm-up
started = time.monotonic()
run(duration, True)
elapsed = time.monotonic() - started
with open(tokens_file, "w") as f:
    f.write("\n".join(kept) + "\n")
if len(rounds) < 2:
    sys.exit(f"too few round trips ({len(rounds)}, {errors[0]} errors)")
q = statistics.quantiles(rounds, n=100, method="inclusive")
print(f"RESULT {len(rounds) / elapsed:.1f} {3 * len(rounds) / elapsed:.1f} "
      f"{q[49] * 1000:.2f} {q[94] * 1000:.2f} {q[98] * 1000:.2f} {len(rounds)} {errors[0]}")
PY

echo "== load: $CLIENTS pipelines, ${DURATION}s (after a warm-up)"
GATE=$(PORT=$PORT CLIENTS=$CLIENTS DURATION=$DURATION DIGEST=$DIGEST BOT_ID=$BOT_ID TOKENS=$TOKENS \
  python3 "$LOAD" | awk '/^RESULT/ {print $2, $3, $4, $5, $6, $7, $8}')
[ -n "$GATE" ] || { echo "the load generator gave no result" >&2; exit 1; }
n=$(psql -Atq "$PGURL/$DB" -c "SELECT count(*) FROM deployments WHERE state = 'succeeded'")
echo "   $n deployments succeeded in all (warm-up included)"

echo "== baseline: pgbench -S -M prepared, $CLIENTS clients"
psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS cab_pgbench WITH (FORCE)" -c "CREATE DATABASE cab_pgbench"
pgbench -q -i -s 10 "$PGURL/cab_pgbench" >/dev/null 2>&1
TPS=$(pgbench -S -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" "$PGURL/cab_pgbench" 2>/dev/null \
  | awk '/^tps/ {print $3; exit}')
psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS cab_pgbench WITH (FORCE)"

echo "== cab gate verify, offline"
curl -fs "http://127.0.0.1:$PORT/api/v1/deployments/keys" -o "$KEYS"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
TOKEN=$(head -n 1 "$TOKENS")
verify() { $CAB gate verify --keys "$KEYS" --environment dev --digest "$DIGEST" "$@"; }
verify --token "$TOKEN" >/dev/null  # warm the page cache
t0=$(date +%s%N)
for _ in $(seq 1 "$VERIFY_RUNS"); do verify --token "$TOKEN" >/dev/null; done
t1=$(date +%s%N)
PER_PROCESS=$(awk -v ns=$((t1 - t0)) -v n="$VERIFY_RUNS" 'BEGIN {printf "%.2f", ns / n / 1e6}')
MANY=$(mktemp)
TMPFILES+=("$MANY")
while [ "$(wc -l <"$MANY")" -lt "$VERIFY_TOKENS" ]; do cat "$TOKENS" >>"$MANY"; done
head -n "$VERIFY_TOKENS" "$MANY" >"$MANY.tmp" && mv "$MANY.tmp" "$MANY"
t0=$(date +%s%N)
verify <"$MANY" >/dev/null
t1=$(date +%s%N)
# One process's own cost (start-up, reading the keys) taken out.
PER_TOKEN=$(awk -v ns=$((t1 - t0)) -v one="$PER_PROCESS" -v n="$VERIFY_TOKENS" \
  'BEGIN {printf "%.1f", (ns / 1e6 - one) / (n - 1) * 1000}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3g", a / b}'; }  # 3 significant digits
echo
set -- $GATE
ROW='%-8s %13s %9s %8s %8s %8s %12s %7s %16s\n'
printf "$ROW" run "round trips/s" "req/s" "p50 ms" "p95 ms" "p99 ms" "round trips" errors "ratio to pgbench"
printf "$ROW" gate "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$(ratio "$2" "$TPS")"
printf '%-8s %23.1f %s\n' pgbench "$TPS" "   (pgbench -S -M prepared, transactions/s)"
echo
echo "cab gate verify: $PER_PROCESS ms per process (one token, $VERIFY_RUNS runs);" \
  "$PER_TOKEN µs per token ($VERIFY_TOKENS tokens in one process)"
echo "(a round trip: authorize, started, succeeded; the ratio compares its requests/s with pgbench's tps)"
