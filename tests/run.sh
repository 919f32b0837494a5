#!/usr/bin/env bash
# CAB's whole test suite: unit tests, integration tests against the real
# PostgreSQL (a fresh database per test) and browser journeys in headless
# Chromium. Sets up what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh

cab_ensure_postgres
cab_ensure_browser

# The server the tests create their databases on (one per test).
export DATABASE_URL="${CAB_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
# Build against the committed query metadata in .sqlx/, not a live database.
export SQLX_OFFLINE=true

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
