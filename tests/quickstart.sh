#!/usr/bin/env bash
# Runs the README's quick-start command exactly as the README writes it (the
# command is read from the README), with DATABASE_URL exported as a newcomer
# following the configuration table would, on a fresh database and a free
# port. Passes when the server answers /readyz and a printed user signs in.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh
cab_ensure_postgres

cmd=$(awk '/^## Quick start/ { q = 1 } q && /^```sh/ { getline; print; exit }' README.md)
if [ -z "$cmd" ]; then
  echo "no quick-start command found in README.md" >&2
  exit 1
fi
db="cab_quickstart_ci_$$"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
export CAB_LISTEN="127.0.0.1:$port"
log=$(mktemp)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -- -"$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  psql "postgres://postgres@127.0.0.1:5432/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
  rm -f "$log"
}
trap cleanup EXIT

echo "== quick start: $cmd (database $db, port $port)"
started=$(date +%s)
setsid bash -c "$cmd" >"$log" 2>&1 &
pid=$!
until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "the quick-start command stopped before serving:" >&2
    cat "$log" >&2
    exit 1
  fi
  if [ $(( $(date +%s) - started )) -gt 1200 ]; then
    echo "the quick-start command did not serve within 20 minutes:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 1
done
echo "ready after $(( $(date +%s) - started )) s"

for user in erin sam carol audrey adam; do
  password=$(awk -v u="$user" '$1 == u && NF == 3 { print $3 }' "$log")
  if [ -z "$password" ]; then
    echo "no password printed for $user:" >&2
    cat "$log" >&2
    exit 1
  fi
  status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/v1/auth/token" \
    -H 'content-type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"$password\"}")
  if [ "$status" != 200 ]; then
    echo "$user could not sign in with the printed password (HTTP $status)" >&2
    exit 1
  fi
done
css=$(curl -fsS "http://127.0.0.1:$port/login" | grep -o '/static/app.css?v=[0-9a-f]*' | head -n 1)
curl -fsS -o /dev/null "http://127.0.0.1:$port$css"
echo "quick start works: the printed users sign in and the stylesheet is served"
