#!/usr/bin/env bash
# The test command of the README, and of CI: checks formatting and lints, then runs every
# test against real services and a real browser, installing or starting what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

say "toolchain"
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" \
    || rustup component add "$component"
done

say "format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

say "unit and integration tests"
cargo test

if [ -d tests/e2e ] && ls tests/e2e/*.test.js >/dev/null 2>&1; then
  say "browser tests (headless Chromium)"
  if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
  INVIGIL_BIN="$PWD/target/debug/invigil" node --test --test-concurrency=1 tests/e2e/
fi
