#!/usr/bin/env bash
# Benchmark of the audit trail at scale: the streamed exports and the
# verification of the whole chain.
#
# Seeds EVENTS audit events (default 1,000,000) forming a valid hash chain,
# written by a generator in Python's standard library that computes each
# event's canonical bytes and hash as README.md ("The NDJSON export, byte by
# byte") describes them: CAB votes, sign-ins that failed and succeeded,
# deployments, comments, refusals and edits of changes, by 200 accounts on
# 20,000 changes, payloads of 200-400 bytes. Then starts `cab serve` as a
# user would and measures:
#   - the baseline: PostgreSQL's own `COPY (SELECT …) TO STDOUT (FORMAT csv)`
#     of the rows the CSV export emits, with its joins, in rows per second
#     (psql to /dev/null; the better of two runs);
#   - GET /api/v1/audit/events/export as CSV and as NDJSON over HTTP (curl),
#     in rows per second, as a ratio to COPY, and the time to first byte;
#   - the server's peak memory during the exports (VmHWM, reset just before
#     them), and its resident memory before;
#   - `cab audit verify` over the whole chain in the database, and
#     `cab audit verify --export` of the NDJSON export, offline: wall time,
#     and both must report success.
# Also printed, for information: the seeding time, and how long the server
# took at start-up to verify and sign the unsigned chain (the first
# checkpoint; an export waits for that much when no checkpoint covers the
# chain, since every export signs the head first).
#
#   bash tests/bench_audit.sh                  # 1,000,000 events
#   EVENTS=50000 bash tests/bench_audit.sh     # a quick run
#   KEEP_DATABASES=1 bash tests/bench_audit.sh # leave the seeded database
#   EXPORT_TIMEOUT=0 bash tests/bench_audit.sh # no limit on an export's time
#   DB=cab_bench_x PORT=18093 bash tests/bench_audit.sh # beside another run
#   KEEP_EXPORT=/tmp/events.ndjson bash tests/bench_audit.sh
#                                  # keep the NDJSON export, and beside it
#                                  # (FILE.key) the key it verifies under
#
# An export still running after EXPORT_TIMEOUT seconds (300 by default) is
# cut off: the figures then cover the rows it sent, the offline check is not
# run, and the script exits 1 after the summary.
#
# Targets: each export at least 0.5 × COPY's rows per second, peak memory
# under 100 MB, time to first byte under 1 s, and each verification under 3 s.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh

EVENTS=${EVENTS:-1000000}
PORT=${PORT:-18092}
# An export still running after this many seconds is cut off (and counted as
# missing its target); 0 waits for it however long it takes.
EXPORT_TIMEOUT=${EXPORT_TIMEOUT:-300}
USERS=200
CHANGES=20000
PGURL=postgres://postgres@127.0.0.1:5432
DB=${DB:-cab_bench_audit}
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
    psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

cab_ensure_postgres
for tool in python3 curl psql; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is missing" >&2; exit 1; }
done

echo "== building (release)"
cargo build --release --locked --bin cab -q
CAB=target/release/cab

now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b - a) / 1e9}'; }

# The generator: `users` prints the accounts (id, username, name, roles) for
# COPY; `events` prints EVENTS chained audit events for COPY (text format),
# from the genesis hash, and writes "SEQ HASH" of the last to HEAD_FILE.
GEN=$(mktemp --suffix=.py)
HEAD_FILE=$(mktemp)
TMPFILES+=("$GEN" "$HEAD_FILE")
cat >"$GEN" <<'PY'
import hashlib, json, os, random, sys, time

events, users, changes = int(os.environ["EVENTS"]), int(os.environ["USERS"]), int(os.environ["CHANGES"])


def uid(prefix, n):  # the same as md5(prefix || n)::uuid in SQL
    h = hashlib.md5(f"{prefix}{n}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def put(b):  # an item: 4-byte big-endian length, then the bytes
    return len(b).to_bytes(4, "big") + b


def put_opt(s):  # an optional item: 0, or 1 and the item
    return b"\x00" if s is None else b"\x01" + put(s.encode())


def canonical_json(v):  # keys sorted (ASCII keys: code points = UTF-8 bytes), no white space, no floats
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def copy_text(s):  # a field in COPY's text format
    if s is None:
        return "\\N"
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


ROLE_SETS = [["engineer"], ["engineer", "security_reviewer"], ["cab_member", "engineer"],
             ["cab_member"], ["release_manager"], ["auditor"], ["admin"]]
SERVICES = ["payments-api", "billing", "ledger", "edge-proxy", "crm", "bastion", "k8s-platform",
            "reporting", "notifications", "api-gateway"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
          "curl/8.5.0", "cab-gate/1.4 (github-actions)"]


def account(i):
    return uid("user", i), f"user{i:04d}", ROLE_SETS[i % len(ROLE_SETS)]


if sys.argv[1] == "users":
    for i in range(1, users + 1):
        user_id, username, roles = account(i)
        print(f"{user_id}\t{username}\tBench User {i}\t{{{','.join(roles)}}}")
    sys.exit()

rnd = random.Random(20261130)
out = sys.stdout
# Events from 400 days ago, 1 to 60 s apart (about 350 days for a million).
t_us = int(time.time() - 400 * 86400) * 1_000_000
prev = bytes(32)
lines = []
for seq in range(1, events + 1):
    t_us += rnd.randint(1_000_000, 60_000_000)
    s, us = divmod(t_us, 1_000_000)
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{us:06d}Z"
    ui = rnd.randint(1, users)
    actor_id, username, roles = account(ui)
    ch = rnd.randint(1, changes)
    change_id = uid("change", ch)
    service = SERVICES[ch % len(SERVICES)]
    addr = f"10.{ui % 200}.{(ui * 7) % 250}.{(ui * 13) % 250 + 1}"
    k = rnd.random()
    if k < 0.20:
        action, etype, eid = "change.voted", "change", change_id
        payload = {"change_number": ch, "revision": 1 + seq % 3,
                   "vote": rnd.choice(["approve", "approve", "reject", "abstain"]),
                   "comment": "Rollback plan reviewed; window agreed with the service owner.",
                   "quorum": {"needed": 2, "policy": "independent", "votes_so_far": 1 + seq % 2},
                   "voter_roles": roles}
    elif k < 0.35:
        action, etype = "auth.login_failed", "user"
        actor_id, roles = None, []
        if seq % 3 == 0:
            username = f"guess{seq % 997}"
        eid = username
        payload = {"attempts": 1 + seq % 5, "client": {"addr": addr, "user_agent": AGENTS[seq % 2]},
                   "reason": "bad_password", "throttled": seq % 5 == 4, "username": username}
    elif k < 0.50:
        action, etype, eid = "auth.login_succeeded", "user", actor_id
        payload = {"method": "password", "session": {"expires_in_s": 43200, "kind": rnd.choice(["web", "api"])},
                   "user_agent": AGENTS[seq % 4], "username": username}
    elif k < 0.75:
        action = rnd.choice(["deployment.authorized", "deployment.started", "deployment.succeeded", "deployment.failed"])
        etype, eid = "deployment", uid("deployment", seq // 3)
        actor_id, username, roles = account(1)
        payload = {"artifact": {"digest": "sha256:" + hashlib.sha256(f"art{ch}".encode()).hexdigest(),
                                "name": service, "version": f"{1 + ch % 4}.{ch % 17}.{seq % 9}"},
                   "change_id": change_id, "environment": rnd.choice(["DEV", "STAGE", "PROD"]),
                   "pipeline": {"provider": "github-actions", "run_id": str(9_000_000 + seq)}, "revision": 1}
    elif k < 0.85:
        action, etype, eid = "change.commented", "change", change_id
        payload = {"body_chars": 40 + seq % 900, "change_number": ch, "comment_id": uid("comment", seq),
                   "mentions": [f"user{ui % users + 1:04d}"], "revision": 1 + seq % 3}
    elif k < 0.90:
        action, etype, eid = "access.denied", "change", change_id
        payload = {"attempted": "change.vote", "change_number": ch,
                   "message": "You filed this change, so you cannot vote on it: CAB asks for an independent member.",
                   "reason": "own_change"}
    else:
        action, etype, eid = rnd.choice(["change.created", "change.submitted", "change.edited"]), "change", change_id
        payload = {"change_number": ch, "environments": ["DEV", "STAGE", "PROD"], "revision": seq % 4,
                   "risk_level": rnd.choice(["low", "medium", "high", "critical"]), "services": [service],
                   "title": f"Rotate the TLS certificates of the {service} fleet"}
    request_id = uid("request", seq)
    body = canonical_json(payload)
    canonical = b"".join([
        put(b"cab-audit-v1"), put(str(seq).encode()), put(when.encode()), put_opt(actor_id), put_opt(username),
        put(str(len(roles)).encode()), *(put(r.encode()) for r in roles), put(action.encode()),
        put(etype.encode()), put_opt(eid), put(body.encode()), put_opt(request_id), put_opt(addr)])
    digest = hashlib.sha256(prev + canonical).digest()
    lines.append("\t".join([
        str(seq), when, copy_text(actor_id), copy_text(username), "{" + ",".join(roles) + "}", action, etype,
        copy_text(eid), copy_text(body), copy_text(request_id), copy_text(addr),
        "\\\\x" + prev.hex(), "\\\\x" + digest.hex(), "\\\\x" + canonical.hex()]))
    prev = digest
    if len(lines) >= 5000:
        out.write("\n".join(lines) + "\n")
        lines.clear()
if lines:
    out.write("\n".join(lines) + "\n")
with open(os.environ["HEAD_FILE"], "w") as f:
    f.write(f"{events} {prev.hex()}\n")
PY

echo "== seeding $EVENTS audit events into $DB"
psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
DATABASE_URL="$PGURL/$DB" RUST_LOG=warn $CAB migrate >/dev/null
started=$(now_ns)
EVENTS=$EVENTS USERS=$USERS CHANGES=$CHANGES python3 "$GEN" users \
  | psql -q -v ON_ERROR_STOP=1 "$PGURL/$DB" -c "COPY users (id, username, display_name, roles) FROM STDIN"
# Changes for the events to name (the export joins them for CHG-n); closed
# long ago, so nothing in the server acts on them, and left out of the
# measures' queue.
psql -q -v ON_ERROR_STOP=1 "$PGURL/$DB" -v changes="$CHANGES" >/dev/null <<'SQL'
INSERT INTO changes (id, number, state, author_id, content, title, description, change_type, category, priority,
                     services, environments, risk_level, risk_rank, risk_reasons, risk_version, revision,
                     created_at, updated_at, submitted_at, decided_at, approved_revision, closed_at, close_code)
SELECT md5('change' || g)::uuid, g, 'closed', md5('user' || (1 + g % 200))::uuid,
       jsonb_build_object('title', 'Seeded change #' || g), 'Seeded change #' || g, 'Planned work.',
       'normal', 'configuration', 'medium', ARRAY['ledger'], ARRAY['DEV', 'STAGE', 'PROD'],
       'low', 0, ARRAY['seeded'], 1, 1, now() - interval '400 days', now() - interval '390 days',
       now() - interval '399 days', now() - interval '398 days', 1, now() - interval '390 days', 'successful'
FROM generate_series(1, :changes) g;
SELECT setval('change_number_seq', :changes);
DELETE FROM measure_pending;
SQL
EVENTS=$EVENTS USERS=$USERS CHANGES=$CHANGES HEAD_FILE=$HEAD_FILE python3 "$GEN" events \
  | psql -q -v ON_ERROR_STOP=1 "$PGURL/$DB" -c "COPY audit_events (seq, occurred_at, actor_id, actor_username,
      actor_roles, action, entity_type, entity_id, payload, request_id, client_addr, prev_hash, hash, canonical)
      FROM STDIN"
read -r HEAD_SEQ HEAD_HASH <"$HEAD_FILE"
[ "$HEAD_SEQ" = "$EVENTS" ] || { echo "the generator stopped early" >&2; exit 1; }
# The head moves one event at a time by trigger; a seeding sets it at once.
psql -q -v ON_ERROR_STOP=1 "$PGURL/$DB" >/dev/null <<SQL
BEGIN;
ALTER TABLE audit_head DISABLE TRIGGER audit_head_forward;
UPDATE audit_head SET seq = $HEAD_SEQ, hash = '\\x$HEAD_HASH';
ALTER TABLE audit_head ENABLE TRIGGER audit_head_forward;
COMMIT;
VACUUM ANALYZE audit_events;
VACUUM ANALYZE users;
VACUUM ANALYZE changes;
SQL
SEED_S=$(secs "$started" "$(now_ns)")
SIZE=$(psql -Atq "$PGURL/$DB" -c "SELECT pg_size_pretty(pg_total_relation_size('audit_events'))")
echo "   seeded in ${SEED_S} s (audit_events with its indexes: $SIZE)"
echo "bench-auditor-password" | DATABASE_URL="$PGURL/$DB" $CAB user add audrey --role auditor --password-stdin >/dev/null

echo "== starting cab serve"
DATABASE_URL="$PGURL/$DB" CAB_LISTEN="127.0.0.1:$PORT" CAB_SECRET_KEY="$SECRET" \
  RUST_LOG=warn $CAB serve >/tmp/cab-bench-audit.log 2>&1 &
SERVER=$!
started=$(now_ns)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "cab serve did not become ready" >&2; exit 1; }
# Waits up to 2 minutes for a count (SQL) to be above zero; WHAT says what
# was awaited if it never comes.
await_count() { # sql what
  local n=0
  for _ in $(seq 1 1200); do
    n=$(psql -Atq "$PGURL/$DB" -c "$1")
    [ "$n" -gt 0 ] && return 0
    sleep 0.1
  done
  echo "the server made no $2 in 2 minutes" >&2
  exit 1
}
# At start-up the server verifies the chain and signs its head (the first
# checkpoint); wait for it, so the exports below do not wait on it.
await_count "SELECT count(*) FROM audit_checkpoints WHERE seq > $EVENTS" checkpoint
FIRST_CHECKPOINT_S=$(secs "$started" "$(now_ns)")
echo "   first checkpoint (the whole chain verified and signed by the server) ${FIRST_CHECKPOINT_S} s after start"
# Then one server checks the whole chain (none was checked yet); wait for
# that too, so it does not share the machine with the measures below.
await_count "SELECT count(*) FROM audit_verifications" "whole check"
WHOLE_CHECK_S=$(secs "$started" "$(now_ns)")
echo "   first whole check of the chain ${WHOLE_CHECK_S} s after start"

BASE="http://127.0.0.1:$PORT"
TOKEN=$(curl -fs "$BASE/api/v1/auth/token" -H 'content-type: application/json' \
  -d '{"username":"audrey","password":"bench-auditor-password"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
KEY=$(curl -fs "$BASE/api/v1/audit/keys" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["verifier_key"])')

echo "== baseline: COPY (SELECT …) TO STDOUT (FORMAT csv), twice"
# The columns the CSV export writes (crates/cab-server/src/audit_trail.rs,
# event_csv), read with the joins of its query (cab_db::audit::export_batch):
# labels are words the server looks up, so COPY gives the raw action and kind.
CUT=$(psql -Atq "$PGURL/$DB" -c "SELECT seq FROM audit_head")
COPY_SQL="COPY (SELECT e.seq, e.occurred_at, e.actor_username, u.display_name, array_to_string(e.actor_roles, ', '),
    e.action, e.action, e.entity_type, e.entity_id, 'CHG-' || c.number,
    CASE WHEN e.action = 'access.denied' THEN 'Refused' ELSE 'Done' END,
    CASE WHEN e.action = 'access.denied' THEN e.payload->>'message' END,
    e.payload::text, e.request_id, e.client_addr, encode(e.prev_hash, 'hex'), encode(e.hash, 'hex')
  FROM audit_events_matching(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL) e
  LEFT JOIN users u ON u.id = e.actor_id
  LEFT JOIN changes c ON c.id = audit_uuid(CASE WHEN e.entity_type = 'change' THEN e.entity_id
                                                ELSE e.payload->>'change_id' END)
  WHERE e.seq > 0 AND e.seq <= $CUT ORDER BY e.seq) TO STDOUT (FORMAT csv)"
COPY_S=
for run in 1 2; do
  t0=$(now_ns)
  psql -q -v ON_ERROR_STOP=1 "$PGURL/$DB" -c "$COPY_SQL" >/dev/null
  s=$(secs "$t0" "$(now_ns)")
  echo "   run $run: $CUT rows in $s s"
  if [ -z "$COPY_S" ] || awk -v a="$s" -v b="$COPY_S" 'BEGIN {exit !(a < b)}'; then COPY_S=$s; fi
done
COPY_RPS=$(awk -v n="$CUT" -v s="$COPY_S" 'BEGIN {printf "%.0f", n / s}')

PID_STATUS=/proc/$SERVER/status
RSS_BEFORE_KB=$(awk '/^VmRSS/ {print $2}' "$PID_STATUS")
# Resets the peak (VmHWM) to the resident size now, so the peak read after
# the exports is theirs (Linux's clear_refs; the process is ours).
if echo 5 >"/proc/$SERVER/clear_refs" 2>/dev/null; then
  PEAK_WHAT="during the exports"
else
  PEAK_WHAT="since start-up (clear_refs refused)"
fi

NDJSON=$(mktemp --suffix=.ndjson)
HEADERS=$(mktemp)
WRITEOUT=$(mktemp)
LINES=$(mktemp)
TMPFILES+=("$NDJSON" "$HEADERS" "$WRITEOUT" "$LINES")
# One export: prints "ROWS TTFB TOTAL BYTES DONE". A complete export (DONE
# 1) holds every event up to the one it was cut at, which its file name
# gives (Content-Disposition: …-to-SEQ-…). One cut off after EXPORT_TIMEOUT
# seconds (DONE 0) counts the rows it received (its lines but the first).
# CSV goes through `wc -l` only, NDJSON to a file (for the offline check).
export_run() { # format
  local url="$BASE/api/v1/audit/events/export?format=$1" rc rows done=1 lines
  set +e
  if [ "$1" = csv ]; then
    curl -sS -f --max-time "$EXPORT_TIMEOUT" -D "$HEADERS" -H "authorization: Bearer $TOKEN" -o - \
      -w '%{stderr}W %{time_starttransfer} %{time_total} %{size_download}\n' "$url" 2>"$WRITEOUT" | wc -l >"$LINES"
    rc=${PIPESTATUS[0]}
  else
    curl -sS -f --max-time "$EXPORT_TIMEOUT" -D "$HEADERS" -H "authorization: Bearer $TOKEN" -o "$NDJSON" \
      -w '%{stderr}W %{time_starttransfer} %{time_total} %{size_download}\n' "$url" 2>"$WRITEOUT"
    rc=$?
    wc -l <"$NDJSON" >"$LINES"
  fi
  set -e
  if [ "$rc" = 0 ]; then
    rows=$(tr -d '\r' <"$HEADERS" | sed -n 's/^content-disposition:.*-to-\([0-9]*\)-.*/\1/ip')
    [ -n "$rows" ] || { echo "the $1 export named no cut" >&2; return 1; }
  elif [ "$rc" = 28 ]; then
    done=0
    lines=$(cat "$LINES")
    rows=$((lines > 0 ? lines - 1 : 0))
  else
    cat "$WRITEOUT" >&2
    echo "the $1 export failed (curl exit $rc)" >&2
    return 1
  fi
  echo "$rows $(sed -n 's/^W //p' "$WRITEOUT") $done"
}
show_export() { # rows, ttfb, total, bytes, done
  if [ "$5" = 1 ]; then
    echo "   $1 rows, $4 bytes in $3 s, first byte after $2 s"
  else
    echo "   CUT OFF after ${EXPORT_TIMEOUT} s (EXPORT_TIMEOUT): $1 rows ($4 bytes) received, first byte after $2 s"
  fi
}
echo "== CSV export over HTTP (curl, the body counted and dropped)"
CSV=$(export_run csv)
read -r CSV_ROWS CSV_TTFB CSV_S CSV_BYTES CSV_DONE <<<"$CSV"
show_export $CSV
echo "== NDJSON export over HTTP (curl to a file)"
ND=$(export_run ndjson)
read -r ND_ROWS ND_TTFB ND_S ND_BYTES ND_DONE <<<"$ND"
show_export $ND
if [ "$ND_DONE" = 1 ]; then
  TRAILER_ROWS=$(tail -n 1 "$NDJSON" | python3 -c 'import json, sys; print(json.load(sys.stdin)["trailer"]["rows"])')
  [ "$TRAILER_ROWS" = "$ND_ROWS" ] || { echo "the NDJSON trailer counts $TRAILER_ROWS rows, not $ND_ROWS" >&2; exit 1; }
fi
PEAK_KB=$(awk '/^VmHWM/ {print $2}' "$PID_STATUS")
RSS_AFTER_KB=$(awk '/^VmRSS/ {print $2}' "$PID_STATUS")

kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=

echo "== baseline for the verification: PostgreSQL sending the verifier's columns (binary COPY, psql to /dev/null)"
VERIFY_COPY_SQL="COPY (SELECT seq, occurred_at, actor_id, actor_username, actor_roles, action, entity_type,
    entity_id, payload, request_id, client_addr, hash FROM audit_events ORDER BY seq) TO STDOUT (FORMAT binary)"
VCOPY_S=
for run in 1 2; do
  t0=$(now_ns)
  psql -q -v ON_ERROR_STOP=1 "$PGURL/$DB" -c "$VERIFY_COPY_SQL" >/dev/null
  s=$(secs "$t0" "$(now_ns)")
  echo "   run $run: $s s"
  if [ -z "$VCOPY_S" ] || awk -v a="$s" -v b="$VCOPY_S" 'BEGIN {exit !(a < b)}'; then VCOPY_S=$s; fi
done
echo "== cab audit verify (database, the whole chain)"
t0=$(now_ns)
DB_VERIFY=$(DATABASE_URL="$PGURL/$DB" RUST_LOG=warn $CAB audit verify 2>&1) \
  || { echo "$DB_VERIFY" >&2; echo "cab audit verify failed" >&2; exit 1; }
VERIFY_DB_S=$(secs "$t0" "$(now_ns)")
echo "   $DB_VERIFY"
echo "   in $VERIFY_DB_S s"
echo "== cab audit verify --export (offline, the NDJSON export)"
if [ "$ND_DONE" = 1 ]; then
  # The floor of any offline check: reading and hashing the file once.
  t0=$(now_ns)
  sha256sum "$NDJSON" >/dev/null
  SHA_S=$(secs "$t0" "$(now_ns)")
  echo "   baseline: sha256sum of the file in $SHA_S s"
  t0=$(now_ns)
  EXPORT_VERIFY=$(RUST_LOG=warn $CAB audit verify --export "$NDJSON" --key "$KEY" 2>&1) \
    || { echo "$EXPORT_VERIFY" >&2; echo "cab audit verify --export failed" >&2; exit 1; }
  VERIFY_EXPORT_S=$(secs "$t0" "$(now_ns)")
  echo "   $EXPORT_VERIFY"
  echo "   in $VERIFY_EXPORT_S s"
  if [ -n "${KEEP_EXPORT:-}" ]; then
    cp "$NDJSON" "$KEEP_EXPORT"
    echo "$KEY" >"$KEEP_EXPORT.key"
    echo "   kept in $KEEP_EXPORT (its key in $KEEP_EXPORT.key)"
  fi
else
  echo "   not run: the NDJSON export was cut off, so there is no complete export to check"
fi

rps() { awk -v n="$1" -v s="$2" 'BEGIN {printf "%.0f", n / s}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3g", a / b}'; }
mb() { awk -v kb="$1" 'BEGIN {printf "%.1f", kb / 1024}'; }
ok() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
  pass = (op == ">=") ? (v >= t) : (v < t); printf "%s", pass ? "met" : "MISSED" }'; }
CSV_RPS=$(rps "$CSV_ROWS" "$CSV_S")
ND_RPS=$(rps "$ND_ROWS" "$ND_S")
CSV_RATIO=$(ratio "$CSV_RPS" "$COPY_RPS")
ND_RATIO=$(ratio "$ND_RPS" "$COPY_RPS")
PEAK_MB=$(mb "$PEAK_KB")
# A cut-off export's rate is that of the rows it sent before the cut, and
# misses the target however fast it was going.
cut_off() { [ "$1" = 1 ] || printf ' (cut off)'; }
ok_export() { if [ "$1" = 1 ]; then ok "$2" ">=" 0.5; else printf MISSED; fi; }

echo
echo "== summary: $EVENTS seeded events ($CUT in the chain at the baseline)"
ROW='%-34s %20s %12s %8s\n'
printf "$ROW" measure value target result
printf "$ROW" "seeding (generate + COPY + VACUUM)" "${SEED_S} s" "-" "-"
printf "$ROW" "first checkpoint after start" "${FIRST_CHECKPOINT_S} s" "-" "-"
printf "$ROW" "first whole check after start" "${WHOLE_CHECK_S} s" "-" "-"
printf "$ROW" "COPY … TO STDOUT (csv), rows/s" "$COPY_RPS" "(baseline)" "-"
printf "$ROW" "CSV export, rows/s" "$CSV_RPS$(cut_off "$CSV_DONE")" "-" "-"
printf "$ROW" "CSV export / COPY" "$CSV_RATIO" ">= 0.5" "$(ok_export "$CSV_DONE" "$CSV_RATIO")"
printf "$ROW" "CSV export, time to first byte" "${CSV_TTFB} s" "< 1 s" "$(ok "$CSV_TTFB" "<" 1)"
printf "$ROW" "NDJSON export, rows/s" "$ND_RPS$(cut_off "$ND_DONE")" "-" "-"
printf "$ROW" "NDJSON export / COPY" "$ND_RATIO" ">= 0.5" "$(ok_export "$ND_DONE" "$ND_RATIO")"
printf "$ROW" "NDJSON export, time to first byte" "${ND_TTFB} s" "< 1 s" "$(ok "$ND_TTFB" "<" 1)"
printf "$ROW" "server memory before (VmRSS)" "$(mb "$RSS_BEFORE_KB") MB" "-" "-"
printf "$ROW" "server peak memory (VmHWM)" "$PEAK_MB MB" "< 100 MB" "$(ok "$PEAK_MB" "<" 100)"
printf "$ROW" "server memory after (VmRSS)" "$(mb "$RSS_AFTER_KB") MB" "-" "-"
printf "$ROW" "binary COPY of the verifier's rows" "${VCOPY_S} s" "(baseline)" "-"
printf "$ROW" "cab audit verify (database)" "${VERIFY_DB_S} s" "< 3 s" "$(ok "$VERIFY_DB_S" "<" 3)"
printf "$ROW" "verify (database) / binary COPY" "$(ratio "$VERIFY_DB_S" "$VCOPY_S")" "-" "-"
if [ "$ND_DONE" = 1 ]; then
  printf "$ROW" "sha256sum of the export" "${SHA_S} s" "(baseline)" "-"
  printf "$ROW" "cab audit verify --export" "${VERIFY_EXPORT_S} s" "< 3 s" "$(ok "$VERIFY_EXPORT_S" "<" 3)"
  printf "$ROW" "verify --export / sha256sum" "$(ratio "$VERIFY_EXPORT_S" "$SHA_S")" "-" "-"
else
  printf "$ROW" "cab audit verify --export" "not run" "< 3 s" "MISSED"
fi
echo
echo "COPY: the better of two runs of the CSV export's columns and joins, psql to /dev/null;"
echo "exports: curl over loopback, CSV counted and dropped ($(mb "$((CSV_BYTES / 1024))") MB), NDJSON to a file ($(mb "$((ND_BYTES / 1024))") MB);"
echo "peak memory $PEAK_WHAT."
if [ "$CSV_DONE" != 1 ] || [ "$ND_DONE" != 1 ]; then
  echo "An export did not finish in EXPORT_TIMEOUT=${EXPORT_TIMEOUT} s; its figures cover the rows sent before the cut." >&2
  exit 1
fi
echo "Both verifications reported success."
