#!/usr/bin/env bash
# CAB's whole test suite: unit tests, integration tests against the real
# PostgreSQL (a fresh database per test) and browser journeys in headless
# Chromium. Sets up what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh

cab_ensure_postgres
cab_ensure_browser
cab_ensure_axe

# The server the tests create their databases on (one per test).
export DATABASE_URL="${CAB_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
# axe-core for the browser tests' accessibility checks.
export CAB_AXE_JS="${CAB_AXE_JS:-$PWD/target/axe/node_modules/axe-core/axe.min.js}"
# Build against the committed query metadata in .sqlx/, not a live database.
export SQLX_OFFLINE=true

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi

# The OpenAPI document against an independent validator and a generated
# client, and the calendar feed against an independent iCalendar parser, on
# the server binary the tests just built. Skipped when arguments (a test
# filter) ask for part of the suite only.
if [ "$#" -eq 0 ]; then
  bash tests/openapi.sh
  bash tests/ical.sh
fi
