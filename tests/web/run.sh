#!/usr/bin/env bash
# Browser end-to-end tests: headless Chromium against a real `ispeed serve`.
# Installs what it needs (Debian's chromium, playwright-core from the lock
# file), builds the debug binary, runs tests/web/e2e.mjs. Screenshots go to
# tests/web/artifacts/ (or $ARTIFACTS).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
(cd tests/web && npm ci --no-audit --no-fund --loglevel=error)
cargo build -p ispeed
CHROMIUM="$(command -v chromium)" node tests/web/e2e.mjs
