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

say "services"
# Redis on 127.0.0.1:6379 for the cluster tests (they use key prefixes of their own); the
# restart and TLS tests start private redis-server processes on other ports.
command -v redis-server >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server openssl >/dev/null
}
redis_answers() {
  (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && read -r -t 2 reply <&3 \
    && [[ "$reply" == +PONG* ]]) 2>/dev/null
}
if ! redis_answers; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do redis_answers && break; sleep 0.2; done
  redis_answers || { echo "Redis did not start on 127.0.0.1:6379" >&2; exit 1; }
fi
echo "Redis answers on 127.0.0.1:6379"

# PostgreSQL on 127.0.0.1:5432 (trust auth) for the record tests, and libpq to build against.
dpkg -s libpq-dev >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpq-dev postgresql >/dev/null
}
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
  pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
fi
echo "PostgreSQL answers on 127.0.0.1:5432"

# A DynamoDB-compatible endpoint on 127.0.0.1:5005 (moto's server, from PyPI) for the status
# table tests; it keeps its tables in memory and stops with the machine.
command -v moto_server >/dev/null 2>&1 || python3 -m pip install -q "moto[server]"
dynamo_answers() { curl -s -o /dev/null "http://127.0.0.1:5005/" 2>/dev/null; }
if ! dynamo_answers; then
  nohup moto_server -H 127.0.0.1 -p 5005 >/tmp/invigil-moto.log 2>&1 &
  for _ in $(seq 100); do dynamo_answers && break; sleep 0.2; done
  dynamo_answers || { echo "moto_server did not start on 127.0.0.1:5005" >&2; exit 1; }
fi
echo "DynamoDB (moto) answers on 127.0.0.1:5005"

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
