#!/usr/bin/env bash
# Folio as it scales out: N release instances on loopback behind nginx
# (deploy/nginx.conf), sharing one Postgres database and one Redis prefix.
#
#   ./scripts/cluster.sh [N]     # N instances (default 2); Ctrl-C stops all
#
# Sourced (by scripts/cluster-test.sh) it only defines cluster_up and
# cluster_down, and after cluster_up sets:
#   CLUSTER_URL        http://127.0.0.1:<nginx port>
#   CLUSTER_DIR        temp dir: nginx prefix, logs of every process
#   INSTANCE_NAMES[i]  FOLIO_INSTANCE of instance i (folio-1, folio-2, …)
#   INSTANCE_PORTS[i], INSTANCE_PIDS[i]
#
# Needs a release build (cargo leptos build --release): the binary in
# $CARGO_TARGET_DIR/release/server and the site in target/site. The database
# is a fresh one, dropped by cluster_down.

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CLUSTER_DIR=""
CLUSTER_URL=""
CLUSTER_DB=""
CLUSTER_DB_URL=""
NGINX_PID=""
INSTANCE_NAMES=()
INSTANCE_PORTS=()
INSTANCE_PIDS=()

# A loopback port nobody listens on (random, so parallel runs rarely meet).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    port_open 127.0.0.1 "$port" || { echo "$port"; return; }
  done
}

ensure_nginx() {
  if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    say "installing nginx"
    apt_install nginx-light || apt_install nginx
  fi
  export PATH="$PATH:/usr/sbin"
}

start_instance() {
  local i="$1" name="folio-$1" port
  port="$(free_port)"
  release_server "$port" \
    FOLIO_INSTANCE="$name" \
    FOLIO_TRUSTED_PROXIES=127.0.0.1 \
    FOLIO_REDIS_PREFIX="cluster:$CLUSTER_DB:" \
    DATABASE_URL="$CLUSTER_DB_URL" \
    FOLIO_LOG="${FOLIO_LOG:-warn}" \
    >"$CLUSTER_DIR/logs/$name.log" 2>&1 &
  INSTANCE_PIDS[i]=$!
  INSTANCE_NAMES[i]="$name"
  INSTANCE_PORTS[i]="$port"
  if ! wait_http_200 "http://127.0.0.1:$port/readyz" 60; then
    echo "instance $name (port $port) never became ready:" >&2
    cat "$CLUSTER_DIR/logs/$name.log" >&2
    return 1
  fi
  say "instance $name on 127.0.0.1:$port (pid ${INSTANCE_PIDS[i]})"
}

# deploy/nginx.conf with our instances and listen port.
nginx_conf() {
  local listen="$1" servers="" i
  for i in "${!INSTANCE_PORTS[@]}"; do
    servers+="        server 127.0.0.1:${INSTANCE_PORTS[i]} max_fails=1 fail_timeout=10s;\n"
  done
  awk -v servers="$servers" -v listen="        listen 127.0.0.1:$listen;\n" '
    /# BEGIN upstream servers/ { print; printf "%s", servers; skip = 1; next }
    /# END upstream servers/   { skip = 0 }
    /# BEGIN listen/           { print; printf "%s", listen; skip = 1; next }
    /# END listen/             { skip = 0 }
    !skip { print }
  ' "$ROOT/deploy/nginx.conf"
}

cluster_up() {
  local n="${1:-2}" i port
  ensure_services
  ensure_nginx
  if [ ! -x "$CARGO_TARGET_DIR/release/server" ] || [ ! -d "$ROOT/target/site/pkg" ]; then
    echo "no release build: run cargo leptos build --release first" >&2
    return 1
  fi
  CLUSTER_DIR="$(mktemp -d /tmp/folio-cluster.XXXXXX)"
  chmod 755 "$CLUSTER_DIR"  # nginx's workers (nobody) traverse it
  mkdir -p "$CLUSTER_DIR/logs" "$CLUSTER_DIR/temp"
  CLUSTER_DB="folio_cluster_$(date +%s)_$$"
  CLUSTER_DB_URL="${DATABASE_URL%/*}/$CLUSTER_DB"

  # One at a time: the first creates and migrates the database.
  for ((i = 1; i <= n; i++)); do start_instance "$i" || return 1; done

  port="$(free_port)"
  nginx_conf "$port" >"$CLUSTER_DIR/nginx.conf"
  nginx -p "$CLUSTER_DIR" -c "$CLUSTER_DIR/nginx.conf" -e "$CLUSTER_DIR/logs/error.log" \
    -g 'daemon off;' &
  NGINX_PID=$!
  CLUSTER_URL="http://127.0.0.1:$port"
  if ! wait_http_200 "$CLUSTER_URL/readyz" 20; then
    echo "nginx on $port never answered:" >&2
    cat "$CLUSTER_DIR/logs/error.log" >&2
    return 1
  fi
  say "nginx on $CLUSTER_URL (pid $NGINX_PID), logs in $CLUSTER_DIR/logs"
}

cluster_down() {
  # Runs from EXIT traps, possibly under set -e: nothing here may fail.
  local pid
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; fi
  for pid in "${INSTANCE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$NGINX_PID" ]; then wait "$NGINX_PID" 2>/dev/null || true; fi
  for pid in "${INSTANCE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$CLUSTER_DB" ] && command -v psql >/dev/null; then
    psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS \"$CLUSTER_DB\" WITH (FORCE)" \
      >/dev/null 2>&1 || true
  fi
  if [ -n "$CLUSTER_DIR" ] && [ -z "${KEEP_CLUSTER_DIR:-}" ]; then rm -rf "$CLUSTER_DIR"; fi
  NGINX_PID=""
  INSTANCE_PIDS=()
  return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  trap cluster_down EXIT
  trap 'exit 130' INT TERM
  cluster_up "${1:-2}"
  say "Folio cluster on $CLUSTER_URL; Ctrl-C stops it"
  wait "$NGINX_PID"
fi
