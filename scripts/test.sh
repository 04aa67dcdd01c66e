#!/usr/bin/env bash
# The whole test suite, as CI runs it: format, lints (server and browser
# builds), the monitoring rules' unit tests, Rust tests against real
# Postgres and Redis, then Playwright in headless Chromium against a release
# build, the cluster and its alerts. Exits non-zero on any failure.
set -euo pipefail
source "$(dirname "$0")/common.sh"
ensure_tools
ensure_services
ensure_moto
ensure_aiosmtpd
ensure_pg_ha_tools   # the failover tests' Patroni cluster (tests/failover, failover.spec.ts)

say "cargo fmt --check"
cargo fmt --all --check

say "clippy: ssr build"
cargo clippy -p app -p server --all-targets --features app/ssr -- -D warnings
say "clippy: hydrate build (wasm32)"
cargo clippy -p app -p frontend --target wasm32-unknown-unknown --features app/hydrate -- -D warnings

say "the WASM build must not contain server-only crates"
forbidden=$(cargo tree -p frontend --target wasm32-unknown-unknown -e normal --prefix none \
  | grep -E '^(sqlx|redis|argon2|mio|zxcvbn|tokio-postgres|image|object_store|fast_image_resize|lettre) ' || true)
if [ -n "$forbidden" ]; then echo "server-only crates in the WASM build:"; echo "$forbidden"; exit 1; fi

say "monitoring: rules, configurations, promtool unit tests of every alert"
./scripts/monitoring-check.sh

say "Rust tests"
# tests/alert_series.rs among them: every series the alert rules read is
# in a real /metrics scrape (the cluster rules' on a Redis Cluster).
cargo test -p app --features ssr
cargo test -p server

say "API, events and search tests on a Redis Cluster (3 masters, 3 replicas)"
# Every module that talks to Redis (sessions, rate limits, the profile
# cache and its sharded invalidations, recent writes, the event streams)
# runs its tests again with REDIS_URL naming a cluster. The failover test
# (tests/cluster.rs) ran above with the other Rust tests: it starts a
# cluster of its own.
CLUSTER_DIR="$(mktemp -d /tmp/folio-redis-cluster.XXXXXX)"
trap 'stop_redis_cluster "$CLUSTER_DIR"' EXIT
start_redis_cluster "$CLUSTER_DIR"
REDIS_URL="$REDIS_CLUSTER_URL" FOLIO_EVENTS_REDIS_URL="$REDIS_CLUSTER_URL" \
  cargo test -p server --test api --test events --test search
stop_redis_cluster "$CLUSTER_DIR"
rm -rf "$CLUSTER_DIR"
trap - EXIT

say "release build (cargo leptos)"
cargo leptos build --release

say "the release WASM within its budget (gzip -9)"
./scripts/wasm-budget.sh

say "browser tests (Playwright, Chromium)"
export FOLIO_E2E_DB="folio_e2e_$(date +%s)_$$"
export FOLIO_SERVER_BIN="$CARGO_TARGET_DIR/release/server"
export FOLIO_SITE_ROOT="$ROOT/target/site"
E2E_PAIR_DIR=""
E2E_HA_DIR=""
cleanup_e2e() {
  if command -v psql >/dev/null; then
    # The run's database, and those of instances with a Folio of their own
    # (named after it: mailed.spec.ts, activity.spec.ts).
    for db in $(psql "${DATABASE_URL%/*}/postgres" -Atc "SELECT datname FROM pg_database WHERE datname LIKE '${FOLIO_E2E_DB}%'" 2>/dev/null); do
      psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
  fi
  if [ -n "$E2E_PAIR_DIR" ]; then stop_pg_pair "$E2E_PAIR_DIR"; rm -rf "$E2E_PAIR_DIR"; fi
  if [ -n "$E2E_HA_DIR" ]; then stop_pg_ha "$E2E_HA_DIR"; rm -rf "$E2E_HA_DIR"; fi
}
trap cleanup_e2e EXIT
# replica.spec.ts runs one more instance on a primary whose replica applies
# every commit 5 s late: the writer's own view must not show that lag.
E2E_PAIR_DIR="$(mktemp -d /tmp/folio-e2e-pair.XXXXXX)"
start_pg_pair "$E2E_PAIR_DIR" 5s
export FOLIO_E2E_REPLICA_PRIMARY="postgres://postgres@127.0.0.1:$PG_PAIR_PRIMARY_PORT"
export FOLIO_E2E_REPLICA="postgres://postgres@127.0.0.1:$PG_PAIR_REPLICA_PORT"
export FOLIO_E2E_REPLICA_LAG_MS=5000
# failover.spec.ts runs one more instance on a Patroni cluster and kills its
# leader mid-edit.
E2E_HA_DIR="$(mktemp -d /tmp/folio-e2e-ha.XXXXXX)"
start_pg_ha "$E2E_HA_DIR"
# shellcheck disable=SC1091
source "$E2E_HA_DIR/env"
export FOLIO_E2E_HA_DIR="$E2E_HA_DIR" FOLIO_E2E_HA_PRIMARY="$PG_HA_PRIMARY_URL" FOLIO_E2E_HA_REPLICA="$PG_HA_REPLICA_URL"
(cd end2end && npx playwright test)

say "cluster: nginx in front of two instances, one killed mid-load"
./scripts/cluster-test.sh

say "monitoring: a real Prometheus and Alertmanager; Redis stopped, an instance killed"
./scripts/monitoring-test.sh

say "benchmark smoke run (1 s per scenario; results in bench/out/)"
./scripts/bench.sh --smoke
