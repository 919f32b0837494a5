#!/usr/bin/env bash
# Makes this machine ready to run CAB's tests: PostgreSQL accepting
# connections on 127.0.0.1:5432, and Chromium with ChromeDriver and axe-core
# for the browser tests. Idempotent; safe to run again. Meant to be sourced.

cab_as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

cab_ensure_postgres() {
  local host=127.0.0.1 port=5432
  if pg_isready -h "$host" -p "$port" -q 2>/dev/null; then return 0; fi
  echo "PostgreSQL is not accepting connections; starting it" >&2
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    cab_as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  for _ in $(seq 1 30); do
    pg_isready -h "$host" -p "$port" -q 2>/dev/null && return 0
    sleep 1
  done
  echo "PostgreSQL is still not reachable at $host:$port; install and start it (trust auth for user postgres)" >&2
  return 1
}

cab_ensure_browser() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then return 0; fi
  echo "Installing Chromium and ChromeDriver for the browser tests" >&2
  cab_as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive cab_as_root apt-get install -y -qq chromium chromium-driver >/dev/null
}

# axe-core, the accessibility engine the browser tests run on every page.
CAB_AXE_VERSION=4.10.3
cab_ensure_axe() {
  local dir=target/axe
  if [ -f "$dir/node_modules/axe-core/axe.min.js" ] \
    && grep -q "\"version\": \"$CAB_AXE_VERSION\"" "$dir/node_modules/axe-core/package.json"; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "Installing npm to fetch axe-core" >&2
    cab_as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive cab_as_root apt-get install -y -qq npm >/dev/null
  fi
  echo "Installing axe-core $CAB_AXE_VERSION for the browser tests" >&2
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-save --no-audit --no-fund --silent "axe-core@$CAB_AXE_VERSION" >/dev/null
}
