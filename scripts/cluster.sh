#!/usr/bin/env bash
# Folio as it scales out: N release instances on loopback behind nginx
# (deploy/nginx.conf), sharing one Redis prefix and one Postgres database on
# a primary of their own, with a streaming replica for public reads
# (nginx -> N app servers -> Redis + primary + replica), watched by
# Prometheus and Alertmanager (deploy/monitoring/).
#
#   ./scripts/cluster.sh [N]     # N instances (default 2); Ctrl-C stops all
#   CLUSTER_REPLICA_DELAY=2s ./scripts/cluster.sh   # a replica that lags 2 s
#
# Sourced (by scripts/cluster-test.sh, scripts/monitoring-test.sh) it only
# defines cluster_up and cluster_down, and after cluster_up sets:
#   CLUSTER_URL        http://127.0.0.1:<nginx port>
#   CLUSTER_DIR        temp dir: nginx prefix, monitoring/, logs of every process
#   INSTANCE_NAMES[i]  FOLIO_INSTANCE of instance i (folio-1, folio-2, …)
#   INSTANCE_PORTS[i], INSTANCE_PIDS[i]
#   PROMETHEUS_URL, ALERTMANAGER_URL   http://127.0.0.1:<port>
#   METRICS_TOKEN      the instances' FOLIO_METRICS_TOKEN (yours when set,
#                      else a random one), which Prometheus presents
#
# MONITORING_SCRAPE_INTERVAL / MONITORING_EVALUATION_INTERVAL replace
# Prometheus's 15 s (tests use a second or two).
#
# Needs a release build (cargo leptos build --release): the binary in
# $CARGO_TARGET_DIR/release/server and the site in target/site. The primary
# and the replica are fresh ones (start_pg_pair, in CLUSTER_DIR), stopped
# and deleted by cluster_down.

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CLUSTER_DIR=""
CLUSTER_URL=""
CLUSTER_DB=""
CLUSTER_DB_URL=""
CLUSTER_REPLICA_URL=""
NGINX_PID=""
INSTANCE_NAMES=()
INSTANCE_PORTS=()
INSTANCE_PIDS=()
METRICS_TOKEN=""
PROMETHEUS_PID=""
PROMETHEUS_URL=""
ALERTMANAGER_PID=""
ALERTMANAGER_URL=""

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
    FOLIO_METRICS_TOKEN="$METRICS_TOKEN" \
    FOLIO_REDIS_PREFIX="cluster:$CLUSTER_DB:" \
    DATABASE_URL="$CLUSTER_DB_URL" \
    DATABASE_REPLICA_URLS="$CLUSTER_REPLICA_URL" \
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

# The instances as Prometheus file_sd targets, labelled with their names.
# Written aside and renamed: Prometheus never reads half a file.
monitoring_targets() {
  local dir="$CLUSTER_DIR/monitoring/targets" i json="" sep=""
  for i in "${!INSTANCE_PORTS[@]}"; do
    json+="$sep{\"targets\": [\"127.0.0.1:${INSTANCE_PORTS[i]}\"], \"labels\": {\"instance\": \"${INSTANCE_NAMES[i]}\"}}"
    sep=", "
  done
  printf '[%s]\n' "$json" >"$dir/folio.json.new"
  mv "$dir/folio.json.new" "$dir/folio.json"
}

# deploy/monitoring/ laid out under $CLUSTER_DIR/monitoring (see the top of
# prometheus.yml), then Alertmanager and Prometheus on free loopback ports.
monitoring_up() {
  local dir="$CLUSTER_DIR/monitoring" src="$ROOT/deploy/monitoring" port
  ensure_prometheus
  mkdir -p "$dir/targets" "$dir/prometheus-data" "$dir/alertmanager-data"
  cp "$src/rules.yml" "$src/alertmanager.yml" "$dir/"
  sed -e "s/^  scrape_interval: .*/  scrape_interval: ${MONITORING_SCRAPE_INTERVAL:-15s}/" \
    -e "s/^  evaluation_interval: .*/  evaluation_interval: ${MONITORING_EVALUATION_INTERVAL:-15s}/" \
    "$src/prometheus.yml" >"$dir/prometheus.yml"
  (umask 077 && printf '%s\n' "$METRICS_TOKEN" >"$dir/metrics-token")
  monitoring_targets

  port="$(free_port)"
  ALERTMANAGER_URL="http://127.0.0.1:$port"
  printf '[{"targets": ["127.0.0.1:%s"]}]\n' "$port" >"$dir/targets/alertmanager.json"
  promtool check config "$dir/prometheus.yml" >"$CLUSTER_DIR/logs/promtool.log" 2>&1 \
    || { cat "$CLUSTER_DIR/logs/promtool.log" >&2; return 1; }
  # --cluster.listen-address= : one Alertmanager, no gossip port.
  prometheus-alertmanager --config.file="$dir/alertmanager.yml" \
    --storage.path="$dir/alertmanager-data" --web.listen-address="127.0.0.1:$port" \
    --cluster.listen-address= --log.level=warn >"$CLUSTER_DIR/logs/alertmanager.log" 2>&1 &
  ALERTMANAGER_PID=$!
  if ! wait_http_200 "$ALERTMANAGER_URL/-/ready" 30; then
    echo "Alertmanager never became ready:" >&2; cat "$CLUSTER_DIR/logs/alertmanager.log" >&2
    return 1
  fi

  port="$(free_port)"
  PROMETHEUS_URL="http://127.0.0.1:$port"
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/prometheus-data" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn \
    >"$CLUSTER_DIR/logs/prometheus.log" 2>&1 &
  PROMETHEUS_PID=$!
  if ! wait_http_200 "$PROMETHEUS_URL/-/ready" 30; then
    echo "Prometheus never became ready:" >&2; cat "$CLUSTER_DIR/logs/prometheus.log" >&2
    return 1
  fi
  say "Prometheus on $PROMETHEUS_URL (pid $PROMETHEUS_PID), Alertmanager on $ALERTMANAGER_URL (pid $ALERTMANAGER_PID)"
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
  start_pg_pair "$CLUSTER_DIR/postgres" "${CLUSTER_REPLICA_DELAY:-0}"
  CLUSTER_DB_URL="postgres://postgres@127.0.0.1:$PG_PAIR_PRIMARY_PORT/$CLUSTER_DB"
  CLUSTER_REPLICA_URL="postgres://postgres@127.0.0.1:$PG_PAIR_REPLICA_PORT/$CLUSTER_DB"
  METRICS_TOKEN="${FOLIO_METRICS_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"

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
  monitoring_up
}

cluster_down() {
  # Runs from EXIT traps, possibly under set -e: nothing here may fail.
  local pid
  for pid in "$PROMETHEUS_PID" "$ALERTMANAGER_PID"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; fi
  for pid in "${INSTANCE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$NGINX_PID" ]; then wait "$NGINX_PID" 2>/dev/null || true; fi
  for pid in "${INSTANCE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$CLUSTER_DIR" ] && [ -d "$CLUSTER_DIR/postgres" ]; then stop_pg_pair "$CLUSTER_DIR/postgres"; fi
  if [ -n "$CLUSTER_DIR" ] && [ -z "${KEEP_CLUSTER_DIR:-}" ]; then rm -rf "$CLUSTER_DIR"; fi
  NGINX_PID=""
  PROMETHEUS_PID=""
  ALERTMANAGER_PID=""
  INSTANCE_PIDS=()
  return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  trap cluster_down EXIT
  trap 'exit 130' INT TERM
  cluster_up "${1:-2}"
  say "Folio cluster on $CLUSTER_URL; Ctrl-C stops it"
  say "alerts: $PROMETHEUS_URL/alerts and $ALERTMANAGER_URL (metrics token in $CLUSTER_DIR/monitoring/metrics-token)"
  wait "$NGINX_PID"
fi
