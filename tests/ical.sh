#!/usr/bin/env bash
# Proves the calendar feed against a parser that did not write it: starts
# the built server (target/debug/cab) as `cab demo` on a fresh database,
# makes a feed for a demo person through the API, and reads it with
# Python's `icalendar` package (tests/ical_check.py), comparing each event
# with what the API says of its change. Run by tests/run.sh after the Rust
# tests; run it alone after `cargo build -p cab-server`.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh

ICALENDAR_VERSION=7.3.0

venv=target/ical-venv
work=target/ical
cab=target/debug/cab
server_url="${CAB_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

step() { echo "==> ical: $*"; }

if [ ! -x "$cab" ]; then
  echo "$cab is missing; build it first: cargo build -p cab-server" >&2
  exit 1
fi

cab_ensure_postgres

step "Python's icalendar $ICALENDAR_VERSION in $venv"
if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "icalendar==$ICALENDAR_VERSION"

rm -rf "$work"
mkdir -p "$work"
suffix=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
database="cab_ical_$suffix"
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base_url="http://127.0.0.1:$port"
export DATABASE_URL="${server_url%/*}/$database" CAB_PUBLIC_URL="$base_url" NO_COLOR=1

server_pid=
cleanup() {
  local status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true # its exit status after SIGTERM is not the test's
  fi
  if ! dropdb --maintenance-db="$server_url" --if-exists --force "$database"; then
    echo "could not drop the database $database" >&2
    [ "$status" -ne 0 ] || status=1
  fi
  if [ "$status" -ne 0 ]; then
    echo "==> ical: FAILED (server log: $work/server.log)" >&2
    [ -f "$work/server.log" ] && tail -n 30 "$work/server.log" >&2
  fi
  exit "$status"
}
trap cleanup EXIT

step "starting $cab demo on $base_url (database $database)"
"$cab" demo --database "$database" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
ready=
for _ in $(seq 1 240); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server exited before it was ready" >&2
    exit 1
  fi
  if curl -fsS -o /dev/null "$base_url/readyz" 2>/dev/null; then
    ready=yes
    break
  fi
  sleep 0.5
done
if [ -z "$ready" ]; then
  echo "the server was not ready after 120 seconds" >&2
  exit 1
fi

password=$(awk '$1 == "carol" && NF == 3 { print $3 }' "$work/server.log")
if [ -z "$password" ]; then
  echo "the demo printed no password for carol" >&2
  exit 1
fi

step "reading the feed with icalendar (tests/ical_check.py)"
CAB_URL="$base_url" CAB_USERNAME=carol CAB_PASSWORD="$password" \
  "$venv/bin/python" tests/ical_check.py

# The feed's secret address never reaches the request log.
if grep -q "calendar/feed/[A-Za-z0-9_-]\{20,\}" "$work/server.log"; then
  echo "the server log names a feed's secret address" >&2
  exit 1
fi

step "passed"
