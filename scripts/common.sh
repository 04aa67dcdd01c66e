# Shared by scripts/dev.sh and scripts/test.sh: installs what is missing and
# finds (or starts) Postgres and Redis. Sourced, not run. Every step is skipped
# when already satisfied, so a second run costs seconds.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# A build cache outside the clone survives fresh clones (CI) and is shared by
# every checkout of this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/folio/target}"
export PATH="$HOME/.cargo/bin:$ROOT/end2end/node_modules/.bin:$PATH"

CARGO_LEPTOS_VERSION=0.3.10
LOCAL="$ROOT/.local"   # git-ignored: project-local service data

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# --- tools -----------------------------------------------------------------

wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$ROOT/Cargo.lock"
}

ensure_tools() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! cargo leptos --version 2>/dev/null | grep -q " $CARGO_LEPTOS_VERSION\$"; then
    say "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 15 minutes, once)"
    cargo install cargo-leptos --locked --version "$CARGO_LEPTOS_VERSION"
  fi
  # cargo-leptos downloads a wasm-bindgen from the internet unless the exact
  # version of Cargo.lock is on PATH: install it, so that never happens.
  local wb; wb="$(wasm_bindgen_version)"
  if ! wasm-bindgen --version 2>/dev/null | grep -q " $wb\$"; then
    say "installing wasm-bindgen-cli $wb"
    cargo install wasm-bindgen-cli --version "$wb" --force
  fi
  # Playwright, and binaryen's wasm-opt for release builds, from npm.
  if [ ! -x end2end/node_modules/.bin/wasm-opt ] || [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
    say "installing npm packages (end2end/)"
    (cd end2end && npm ci --no-audit --no-fund)
  fi
  if [ ! -x /usr/bin/chromium ]; then
    say "installing Debian's chromium"
    apt_install chromium
  fi
}

# --- services ----------------------------------------------------------------

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# In a subshell: `exec 3<>… 2>/dev/null` in the calling shell would also
# send the rest of the script's stderr (compiler errors!) to /dev/null.
redis_answers() {
  local reply
  reply=$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf 'PING\r\n' >&3
    read -r -t 2 line <&3 || true
    printf '%s' "${line:-}"
  ) || return 1
  [[ "$reply" == +PONG* ]]
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# A loopback port nobody listens on (random, so parallel runs rarely meet),
# below Linux's ephemeral range (32768 and up): a port there may be the
# local end of an outgoing connection, and the bind then fails although
# nothing listens.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 12000))
    port_open 127.0.0.1 "$port" || { echo "$port"; return; }
  done
}

start_local_postgres() {
  local port=55432 data="$LOCAL/postgres"
  if [ -z "$(pg_bin)" ]; then say "installing postgresql"; apt_install postgresql; fi
  local bin; bin="$(pg_bin)"
  local run=()
  if [ "$(id -u)" = 0 ]; then
    run=(runuser -u postgres --)  # postgres refuses to run as root
    mkdir -p "$data" && chown postgres: "$data"
    # The postgres user must reach its data directory, which it cannot in a
    # clone under a private home (/root is 0700): use a directory of its own.
    if ! runuser -u postgres -- test -w "$data"; then
      data="/var/lib/folio/$(printf %s "$ROOT" | sha1sum | cut -c1-12)/postgres"
      mkdir -p "$data" && chown postgres: "$data" "$(dirname "$data")"
    fi
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    say "initialising a project-local Postgres in $data"
    mkdir -p "$data"
    "${run[@]}" "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null
  fi
  if ! port_open 127.0.0.1 $port; then
    say "starting the project-local Postgres on 127.0.0.1:$port"
    "${run[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-p $port -c listen_addresses=127.0.0.1 -k $data" start >/dev/null
  fi
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/folio"
}

start_local_redis() {
  local port=56379 data="$LOCAL/redis"
  if ! command -v redis-server >/dev/null; then say "installing redis-server"; apt_install redis-server; fi
  mkdir -p "$data"
  if ! redis_answers 127.0.0.1 $port; then
    say "starting the project-local Redis on 127.0.0.1:$port"
    redis-server --port $port --bind 127.0.0.1 --daemonize yes --dir "$data" \
      --save "" --appendonly no --logfile "$data/redis.log" --pidfile "$data/redis.pid"
    for _ in $(seq 50); do redis_answers 127.0.0.1 $port && break; sleep 0.1; done
  fi
  export REDIS_URL="redis://127.0.0.1:$port"
}

# DATABASE_URL / REDIS_URL when set; else the machine's own on 127.0.0.1 when
# they answer; else project-local ones (data under .local/, loopback only).
ensure_services() {
  if [ -z "${DATABASE_URL:-}" ]; then
    if port_open 127.0.0.1 5432; then export DATABASE_URL="postgres://postgres@127.0.0.1:5432/folio"
    else start_local_postgres; fi
  fi
  if [ -z "${REDIS_URL:-}" ]; then
    if redis_answers 127.0.0.1 6379; then export REDIS_URL="redis://127.0.0.1:6379"
    else start_local_redis; fi
  fi
  say "Postgres: $DATABASE_URL"
  say "Redis:    $REDIS_URL"
}

# --- a primary and a streaming replica ------------------------------------------

# A Postgres primary and a hot standby streaming from it, on spare loopback
# ports, their data in DIR (a fresh temp dir): the machine's own Postgres
# allows no replication connections and is never reconfigured. The replica
# applies each commit APPLY_DELAY late (recovery_min_apply_delay: 0, 2s…),
# which is how tests and demos make its lag long enough to see.
#   start_pg_pair DIR [APPLY_DELAY]    sets PG_PAIR_PRIMARY_PORT, PG_PAIR_REPLICA_PORT
#   stop_pg_pair DIR                   stops both (safe to call twice)
start_pg_pair() {
  local dir="$1" delay="${2:-0}" bin run=() node
  if [ -z "$(pg_bin)" ]; then say "installing postgresql"; apt_install postgresql; fi
  bin="$(pg_bin)"
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    run=(runuser -u postgres --)  # postgres refuses to run as root
    chown postgres: "$dir"
    chmod 755 "$dir"
  fi
  PG_PAIR_PRIMARY_PORT="$(free_port)"
  "${run[@]}" "$bin/initdb" -D "$dir/primary" -A trust -U postgres >/dev/null
  "${run[@]}" "$bin/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w \
    -o "-p $PG_PAIR_PRIMARY_PORT -c listen_addresses=127.0.0.1 -k $dir" start >/dev/null
  # -R: standby.signal and the connection to the primary; -X stream: the WAL
  # written during the copy comes along, so the copy starts consistent.
  "${run[@]}" "$bin/pg_basebackup" -h 127.0.0.1 -p "$PG_PAIR_PRIMARY_PORT" -U postgres \
    -D "$dir/replica" -R -X stream
  echo "recovery_min_apply_delay = '$delay'" \
    | "${run[@]}" tee -a "$dir/replica/postgresql.auto.conf" >/dev/null
  PG_PAIR_REPLICA_PORT="$(free_port)"
  "${run[@]}" "$bin/pg_ctl" -D "$dir/replica" -l "$dir/replica.log" -w \
    -o "-p $PG_PAIR_REPLICA_PORT -c listen_addresses=127.0.0.1 -k $dir" start >/dev/null
  say "Postgres primary on 127.0.0.1:$PG_PAIR_PRIMARY_PORT, replica on :$PG_PAIR_REPLICA_PORT (recovery_min_apply_delay $delay)"
}

stop_pg_pair() {
  local dir="$1" bin run=() node
  bin="$(pg_bin)"
  if [ "$(id -u)" = 0 ]; then run=(runuser -u postgres --); fi
  for node in replica primary; do
    if [ -f "$dir/$node/postmaster.pid" ]; then
      "${run[@]}" "$bin/pg_ctl" -D "$dir/$node" -m fast -w stop >/dev/null 2>&1 || true
    fi
  done
}

# --- a Redis Cluster -------------------------------------------------------------

# Three masters and three replicas on spare loopback ports (each with its
# cluster bus on port + 10 000), their data in DIR (a fresh temp dir).
#   start_redis_cluster DIR    sets REDIS_CLUSTER_URL (redis+cluster://…, every node a seed)
#   stop_redis_cluster DIR     stops every node (safe to call twice)
start_redis_cluster() {
  local dir="$1" port ports=() hosts=() tries
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    say "installing redis-server"; apt_install redis-server redis-tools
  fi
  mkdir -p "$dir"
  # Nodes on 20000–21999, so their bus ports (30000–31999) can never be
  # another node's port.
  while [ "${#ports[@]}" -lt 6 ]; do
    port=$((20000 + RANDOM % 2000))
    if ! port_open 127.0.0.1 "$port" && ! port_open 127.0.0.1 $((port + 10000)) \
        && [[ " ${ports[*]} " != *" $port "* ]]; then
      ports+=("$port")
    fi
  done
  for port in "${ports[@]}"; do
    mkdir -p "$dir/$port"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir/$port" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000 \
      --save "" --appendonly no --logfile "$dir/$port/redis.log" --pidfile "$dir/$port/redis.pid"
    hosts+=("127.0.0.1:$port")
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 50); do redis_answers 127.0.0.1 "$port" && break; sleep 0.1; done
  done
  redis-cli --cluster create "${hosts[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log"
  for tries in $(seq 100); do
    redis-cli -p "${ports[0]}" cluster info | grep -q "cluster_state:ok" && break
    sleep 0.2
  done
  REDIS_CLUSTER_URL="redis+cluster://$(IFS=,; echo "${hosts[*]}")"
  say "Redis Cluster: $REDIS_CLUSTER_URL"
}

stop_redis_cluster() {
  local dir="$1" pidfile
  for pidfile in "$dir"/*/redis.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
}

# --- a Patroni cluster (the production database, issue 26) ------------------------

# etcd, three Patroni nodes running deploy/postgres-ha/patroni.yml and HAProxy
# running deploy/postgres-ha/haproxy.cfg, on spare loopback ports, their
# data in DIR (fresh; the postgres user must be able to reach it). Writes
# DIR/env: PG_HA_PRIMARY_URL, PG_HA_REPLICA_URL, the HAProxy ports, each
# node's ports and its Patroni pid file, for tests to source or read.
#   start_pg_ha DIR    stop_pg_ha DIR    pg_ha_leader DIR
ensure_pg_ha_tools() {
  if ! command -v etcd >/dev/null || ! command -v patroni >/dev/null \
    || ! command -v haproxy >/dev/null || ! command -v envsubst >/dev/null; then
    # Debian's packages: the etcd 3.4 server, Patroni 3.0 (for Debian's own
    # Python, readable by the postgres user) and HAProxy 2.6. None of them
    # is started by the install in a container (no init system); on a host
    # with systemd the packages' own services stay on their default ports,
    # which these scripts never use.
    say "installing etcd-server, patroni and haproxy"
    apt_install etcd-server patroni haproxy gettext-base
  fi
  if [ -z "$(pg_bin)" ]; then say "installing postgresql"; apt_install postgresql; fi
}

start_pg_ha() {
  local dir="$1" run=() i
  ensure_pg_ha_tools
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [ "$(id -u)" = 0 ]; then
    run=(runuser -u postgres --)  # Postgres refuses to run as root
    chown postgres: "$dir"
    chmod 755 "$dir"
  fi
  local etcd_port etcd_peer
  etcd_port="$(free_port)"; etcd_peer="$(free_port)"
  # `echo $$; exec`: the pid files name etcd and Patroni themselves, not a
  # runuser in between, so a SIGKILL reaches the process it means.
  "${run[@]}" sh -c 'echo $$ >"$0/etcd.pid"; exec etcd --name folio-ha --data-dir "$0/etcd" \
    --listen-client-urls "http://127.0.0.1:$1" --advertise-client-urls "http://127.0.0.1:$1" \
    --listen-peer-urls "http://127.0.0.1:$2" --initial-advertise-peer-urls "http://127.0.0.1:$2" \
    --initial-cluster "folio-ha=http://127.0.0.1:$2"' "$dir" "$etcd_port" "$etcd_peer" >"$dir/etcd.log" 2>&1 &
  for _ in $(seq 100); do port_open 127.0.0.1 "$etcd_port" && break; sleep 0.1; done

  {
    echo "PG_HA_DIR=$dir"
    echo "PG_HA_ETCD_PORT=$etcd_port"
  } >"$dir/env"
  for i in 1 2 3; do
    local pg_port api_port node_dir
    pg_port="$(free_port)"; api_port="$(free_port)"
    node_dir="$dir/node$i"
    "${run[@]}" mkdir -p "$node_dir/socket"
    NODE_NAME="node$i" NODE_HOST=127.0.0.1 NODE_API_PORT="$api_port" NODE_PG_PORT="$pg_port" \
      ETCD_HOSTS="127.0.0.1:$etcd_port" PG_HBA_NETWORK=127.0.0.1/32 PG_AUTH_METHOD=trust \
      NODE_DATA_DIR="$node_dir/data" NODE_SOCKET_DIR="$node_dir/socket" PG_BIN_DIR="$(pg_bin)" \
      PG_SUPERUSER_PASSWORD=folio-ha-test PG_REPLICATION_PASSWORD=folio-ha-test \
      envsubst <"$ROOT/deploy/postgres-ha/patroni.yml" | "${run[@]}" tee "$node_dir/patroni.yml" >/dev/null
    {
      echo "PG_HA_NODE${i}_PG_PORT=$pg_port"
      echo "PG_HA_NODE${i}_API_PORT=$api_port"
    } >>"$dir/env"
    export "NODE${i}_HOST=127.0.0.1" "NODE${i}_PG_PORT=$pg_port" "NODE${i}_API_PORT=$api_port"
    start_pg_ha_node "$dir" "$i"
  done

  local primary_port replica_port
  primary_port="$(free_port)"; replica_port="$(free_port)"
  HAPROXY_HOST=127.0.0.1 HAPROXY_PRIMARY_PORT="$primary_port" HAPROXY_REPLICA_PORT="$replica_port" \
    envsubst <"$ROOT/deploy/postgres-ha/haproxy.cfg" >"$dir/haproxy.cfg"
  haproxy -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid" 2>"$dir/haproxy.log"
  {
    echo "PG_HA_PRIMARY_PORT=$primary_port"
    echo "PG_HA_REPLICA_PORT=$replica_port"
    echo "PG_HA_PRIMARY_URL=postgres://postgres@127.0.0.1:$primary_port"
    echo "PG_HA_REPLICA_URL=postgres://postgres@127.0.0.1:$replica_port"
  } >>"$dir/env"

  # Ready: a leader takes writes through HAProxy's primary port and two
  # replicas stream from it (synchronous mode has its standby).
  local deadline=$((SECONDS + 120)) psql_bin; psql_bin="$(pg_bin)/psql"
  until [ "$("$psql_bin" -h 127.0.0.1 -p "$primary_port" -U postgres -d postgres -Atc \
      "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null || true)" = 2 ] \
    && "$psql_bin" -h 127.0.0.1 -p "$replica_port" -U postgres -d postgres -Atc "SELECT 1" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "the Patroni cluster in $dir did not come up; its logs:" >&2
      tail -n 20 "$dir"/node*/patroni.log "$dir/etcd.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  say "Patroni cluster: primary 127.0.0.1:$primary_port, replicas 127.0.0.1:$replica_port (leader $(pg_ha_leader "$dir"))"
}

# (Re)starts node I's Patroni (which starts its Postgres), in the background.
start_pg_ha_node() {
  local dir="$1" i="$2" run=()
  if [ "$(id -u)" = 0 ]; then run=(runuser -u postgres --); fi
  # setsid: a test's SIGKILL of this pid is a dead host's Patroni, and
  # nothing of the caller's shell waits on it.
  "${run[@]}" setsid sh -c 'echo $$ >"$0/patroni.pid"; exec patroni "$0/patroni.yml"' "$dir/node$i" \
    >>"$dir/node$i/patroni.log" 2>&1 &
  for _ in $(seq 50); do [ -s "$dir/node$i/patroni.pid" ] && break; sleep 0.1; done
}

# A dead host: node I's Patroni and its Postgres killed with SIGKILL.
kill_pg_ha_node() {
  local dir="$1" i="$2"
  kill -9 "$(cat "$dir/node$i/patroni.pid")" 2>/dev/null || true
  if [ -f "$dir/node$i/data/postmaster.pid" ]; then
    kill -9 "$(head -n 1 "$dir/node$i/data/postmaster.pid")" 2>/dev/null || true
  fi
}

pg_ha_leader() {
  local dir="$1" i port
  for i in 1 2 3; do
    port="$(sed -n "s/^PG_HA_NODE${i}_API_PORT=//p" "$dir/env")"
    # A dead node does not answer: ask the next one.
    curl -sf --max-time 1 "http://127.0.0.1:$port/cluster" 2>/dev/null \
      | python3 -c 'import json, sys
members = json.load(sys.stdin)["members"]
print(next((m["name"] for m in members if m["role"] == "leader"), ""))' 2>/dev/null \
      | grep . && return 0
  done
  return 0
}

# A planned switchover (patronictl), from the leader to a streaming replica.
pg_ha_switchover() {
  local dir="$1" leader
  leader="$(pg_ha_leader "$dir")"
  patronictl -c "$dir/node1/patroni.yml" switchover --leader "$leader" --force
}

stop_pg_ha() {
  local dir="$1" i pid bin
  [ -d "$dir" ] || return 0
  bin="$(pg_bin)"
  if [ -f "$dir/haproxy.pid" ]; then kill "$(cat "$dir/haproxy.pid")" 2>/dev/null || true; fi
  for i in 1 2 3; do
    if [ -f "$dir/node$i/patroni.pid" ]; then
      pid="$(cat "$dir/node$i/patroni.pid")"
      kill "$pid" 2>/dev/null || true
    fi
  done
  for i in 1 2 3; do
    if [ -f "$dir/node$i/patroni.pid" ]; then
      pid="$(cat "$dir/node$i/patroni.pid")"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    # A Postgres whose Patroni was SIGKILLed keeps running: stop it too.
    if [ -f "$dir/node$i/data/postmaster.pid" ]; then
      kill -9 "$(head -n 1 "$dir/node$i/data/postmaster.pid")" 2>/dev/null || true
    fi
  done
  if [ -f "$dir/etcd.pid" ]; then kill "$(cat "$dir/etcd.pid")" 2>/dev/null || true; fi
}

# --- S3 (moto) -----------------------------------------------------------------

# PyPI's moto[server], an S3-compatible server, in a venv of the project's
# own (never the system's Python): the avatar store's tests run against it
# (server/tests/api/avatars.rs starts its own moto_server on a spare port).
FOLIO_VENV="${FOLIO_VENV:-$HOME/.cache/folio/venv}"
ensure_moto() {
  if [ -x "$FOLIO_VENV/bin/moto_server" ]; then
    export FOLIO_MOTO_SERVER="$FOLIO_VENV/bin/moto_server"
    return
  fi
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    say "installing python3-venv"
    apt_install python3-venv
  fi
  say "installing moto[server] into $FOLIO_VENV"
  python3 -m venv "$FOLIO_VENV"
  "$FOLIO_VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
  export FOLIO_MOTO_SERVER="$FOLIO_VENV/bin/moto_server"
}

# Starts moto_server on a free loopback port (for a demo or a manual test
# against S3): sets MOTO_PORT and MOTO_PID; the caller kills it.
start_moto() {
  ensure_moto
  MOTO_PORT="$(free_port)"
  "$FOLIO_MOTO_SERVER" -H 127.0.0.1 -p "$MOTO_PORT" >/dev/null 2>&1 &
  MOTO_PID=$!
  wait_http_200 "http://127.0.0.1:$MOTO_PORT/" 30 || { echo "moto_server did not start" >&2; return 1; }
  say "moto (S3) on 127.0.0.1:$MOTO_PORT"
}

# --- SMTP sink (aiosmtpd) -------------------------------------------------------

# Debian's python3-aiosmtpd: a real SMTP server the mail tests deliver to
# (server/tests/support/smtp.rs and end2end/tests/smtp.ts start it on a spare
# port through scripts/smtp_sink.py, which writes each message to a file).
# Debian's package is for Debian's Python: /usr/bin/python3, which may not be
# the python3 first on PATH (pyenv); FOLIO_SMTP_PYTHON names it for the tests.
ensure_aiosmtpd() {
  export FOLIO_SMTP_PYTHON="${FOLIO_SMTP_PYTHON:-/usr/bin/python3}"
  if "$FOLIO_SMTP_PYTHON" -c 'import aiosmtpd' 2>/dev/null; then return; fi
  say "installing python3-aiosmtpd (the SMTP sink of the mail tests)"
  apt_install python3-aiosmtpd
}

# --- the release server ------------------------------------------------------------

# Runs the release binary (built by `cargo leptos build --release`) on
# 127.0.0.1:$1 with the site layout cargo-leptos would pass, plus any
# VAR=value settings; in the foreground, so callers add `&` and redirect.
# `exec`: a function run with `&` is a subshell, and `$!` must be the
# server itself (callers kill it and read its /proc status).
release_server() {
  local port="$1"; shift
  # Loopback only: /metrics may be open (a release build closes it unless
  # told; a FOLIO_METRICS_TOKEN in "$@" still wins).
  exec env LEPTOS_OUTPUT_NAME=folio LEPTOS_SITE_ROOT="$ROOT/target/site" LEPTOS_SITE_PKG_DIR=pkg \
    LEPTOS_SITE_ADDR="127.0.0.1:$port" FOLIO_METRICS_OPEN=on "$@" "$CARGO_TARGET_DIR/release/server"
}

# Polls until $1 answers 200, for at most $2 seconds.
wait_http_200() {
  local url="$1" secs="$2" i
  for ((i = 0; i < secs * 10; i++)); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

# --- monitoring ----------------------------------------------------------------

# Prometheus (with promtool) and Alertmanager (with amtool), Debian's
# builds: deploy/monitoring/ is checked with them (scripts/test.sh) and
# scripts/cluster.sh runs them. Recommends skipped: the node exporter and
# its collectors are not ours to install.
ensure_prometheus() {
  if ! command -v promtool >/dev/null || ! command -v prometheus-alertmanager >/dev/null \
    || ! command -v amtool >/dev/null; then
    say "installing prometheus and prometheus-alertmanager"
    apt_install --no-install-recommends prometheus prometheus-alertmanager
  fi
  if ! command -v jq >/dev/null; then say "installing jq"; apt_install jq; fi
}

# --- benchmarks ----------------------------------------------------------------

# wrk drives the load of scripts/bench.sh; brotli (best effort) measures the
# compressed size of the release assets.
ensure_wrk() {
  if ! command -v wrk >/dev/null; then say "installing wrk"; apt_install wrk; fi
  if ! command -v brotli >/dev/null && ! python3 -c 'import brotli' 2>/dev/null; then
    say "installing brotli (asset sizes)"
    apt_install brotli || echo "brotli unavailable: its sizes will read n/a"
  fi
}

# The latency rows of a people-search run (bench/search.md) appended to a
# results file as its own section, with the run's own date line: the two
# files can come from different runs, and each row says which.
append_search_rows() {
  local search="$1" results="$2"
  {
    echo
    echo "## People search ($(sed -n 's/^# People search at //p' "$search"), p50/p99 per kind of query; plans and index sizes in ${search#$ROOT/})"
    echo
    sed -n '3p' "$search"
    echo
    sed -n '/^| query |/,/^$/p' "$search" | sed '/^$/d'
  } >>"$results"
}
