#!/usr/bin/env bash
# Proves the API's OpenAPI document against tools that did not write it:
# starts the built server (target/debug/cab) on a fresh database, validates
# /api/openapi.json with openapi-spec-validator, generates a Python client
# from it with openapi-python-client and drives the API through that client
# (tests/openapi_client.py). Run by tests/run.sh after the Rust tests; run it
# alone after `cargo build -p cab-server`.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh

OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0
OPENAPI_PYTHON_CLIENT_VERSION=0.29.1
SETUPTOOLS_VERSION=84.2.1

venv=target/openapi-venv
work=target/openapi
cab=target/debug/cab
# The PostgreSQL server to create the throwaway database on.
server_url="${CAB_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

step() { echo "==> openapi: $*"; }

if [ ! -x "$cab" ]; then
  echo "$cab is missing; build it first: cargo build -p cab-server" >&2
  exit 1
fi

cab_ensure_postgres

step "Python tools in $venv (openapi-spec-validator $OPENAPI_SPEC_VALIDATOR_VERSION, openapi-python-client $OPENAPI_PYTHON_CLIENT_VERSION)"
if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION" \
  "openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION" \
  "setuptools==$SETUPTOOLS_VERSION"

rm -rf "$work"
mkdir -p "$work"

suffix=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
database="cab_openapi_$suffix"
export DATABASE_URL="${server_url%/*}/$database"
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base_url="http://127.0.0.1:$port"
export CAB_SECRET_KEY
CAB_SECRET_KEY=$(od -An -N48 -tx1 /dev/urandom | tr -d ' \n')
export CAB_LISTEN="127.0.0.1:$port" CAB_PUBLIC_URL="$base_url" CAB_ENV_LABEL=OPENAPI NO_COLOR=1

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
    echo "==> openapi: FAILED (server log: $work/server.log)" >&2
    [ -f "$work/server.log" ] && tail -n 30 "$work/server.log" >&2
  fi
  exit "$status"
}
trap cleanup EXIT

username=openapi-engineer
password="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')-pw"
step "database $database; creating the user $username"
echo "$password" | "$cab" user add "$username" --role engineer --password-stdin >/dev/null

step "starting $cab serve on $base_url"
"$cab" serve >"$work/server.log" 2>&1 &
server_pid=$!
ready=
for _ in $(seq 1 60); do
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
  echo "the server was not ready after 30 seconds" >&2
  exit 1
fi

step "downloading $base_url/api/openapi.json"
curl -fsS -o "$work/openapi.json" "$base_url/api/openapi.json"

step "validating with openapi-spec-validator"
"$venv/bin/openapi-spec-validator" --validation-errors all "$work/openapi.json"

step "generating a Python client with openapi-python-client"
cat >"$work/generator.json" <<'EOF'
{
  "project_name_override": "cab-api-client",
  "package_name_override": "cab_api_client",
  "content_type_overrides": {"application/zip": "application/octet-stream"},
  "post_hooks": []
}
EOF
"$venv/bin/openapi-python-client" generate --path "$work/openapi.json" \
  --config "$work/generator.json" --meta setup --fail-on-warning \
  --output-path "$work/cab-api-client"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-build-isolation --force-reinstall --no-deps "$work/cab-api-client"
"$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null

step "driving the API through the generated client (tests/openapi_client.py)"
CAB_URL="$base_url" CAB_USERNAME="$username" CAB_PASSWORD="$password" \
  "$venv/bin/python" tests/openapi_client.py

step "passed"
