#!/usr/bin/env bash
# Regenerates the README's screenshots (docs/screenshots/*.png) from the real
# pages of a fresh demo board, in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh
cab_ensure_postgres
cab_ensure_browser
cargo build --locked --bin cab
python3 tests/screenshots.py
