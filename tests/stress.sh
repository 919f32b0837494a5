#!/usr/bin/env bash
# Figures for CAB under stress, each against `cab serve` on a fresh database
# and on loopback only (tests/stress.py):
#   slow      200 clients sending headers one byte a second: the server's
#             open descriptors, and how many the server closed, and when;
#   shutdown  SIGTERM while a client has sent half a request and stalls;
#   memory    guesses from 100 addresses until 500 passwords have been
#             checked: idle, peak and resting memory;
#   flood     a legitimate sign-in while 400 connections from 40 addresses
#             guess made-up usernames, as a multiple of an unloaded sign-in;
#   logs      log lines and bytes per refused sign-in at the default level;
#   outage    how long a request waits for its 503 while PostgreSQL is away.
#
#   bash tests/stress.sh                  # every scenario, this checkout
#   bash tests/stress.sh memory flood     # some of them
#   CAB=/path/to/other/cab bash tests/stress.sh   # another build, e.g. an
#                                          # older version, for before/after
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh
cab_ensure_postgres
if [ -z "${CAB:-}" ]; then
  cargo build --locked --bin cab -q
  CAB=target/debug/cab
fi
exec python3 tests/stress.py "$CAB" "$@"
