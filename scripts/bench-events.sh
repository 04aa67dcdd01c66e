#!/usr/bin/env bash
# The event pipeline's numbers (run by scripts/bench.sh after its scenarios,
# or alone after a release build):
#   - end-to-end latency, commit -> consumer effect, p50/p99, at rest (20
#     edits/s) and during 500 edits/s, from Postgres's own clock: the outbox
#     row's insert (`created_at`, the last statement before the commit) to
#     the effect transaction of the search consumer (`processed_events`);
#   - the HTTP latency of those edits;
#   - relay and consumer throughput: a backlog of events inserted while no
#     relay runs, drained by one `server --worker` (relay and consumers);
#   - what the outbox insert adds to a profile edit's transaction: pgbench
#     runs the edit's statements with and without it.
#
#   ./scripts/bench-events.sh            10 s phases, 50 000-event backlog
#   ./scripts/bench-events.sh --smoke    2 s phases, 2 000-event backlog
# Writes bench/events.md (bench/out/events.md with --smoke).
set -euo pipefail
source "$(dirname "$0")/common.sh"

PHASE=10
BACKLOG=50000
USERS=200
SMOKE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1; PHASE=2; BACKLOG=2000; USERS=40 ;;
    *) echo "usage: $0 [--smoke]" >&2; exit 2 ;;
  esac
  shift
done

ensure_services
[ -x "$CARGO_TARGET_DIR/release/server" ] || { echo "no release build: run cargo leptos build --release (or scripts/bench.sh)" >&2; exit 1; }
WORK="$ROOT/bench/out"
mkdir -p "$WORK"
if [ -n "$SMOKE" ]; then RESULTS="$WORK/events.md"; else RESULTS="$ROOT/bench/events.md"; fi
PORT=3310
WORKER_PORT=3311
BASE="http://127.0.0.1:$PORT"
PREFIX="benchev:"
DB_URL="${DATABASE_URL%/*}/folio_bench_events"
ADMIN_DB_URL="${DATABASE_URL%/*}/postgres"
PASSWORD="violet-kettle-harbour-93"
PGBENCH="$(pg_bin)/pgbench"
SERVER_PID=""
WORKER_PID=""
LOG="$WORK/events-server.log"

# Started in a command substitution, the servers are not this shell's
# children: wait for them by polling.
stop_pid() {
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
}
cleanup() { stop_pid "$SERVER_PID"; stop_pid "$WORKER_PID"; }
trap cleanup EXIT

# The server on $PORT, or a worker on $WORKER_PORT with --worker.
start() { # port, extra VAR=value / --worker
  local port=$1; shift
  local args=() vars=()
  for a in "$@"; do if [ "$a" = --worker ]; then args+=(--worker); else vars+=("$a"); fi; done
  env LEPTOS_OUTPUT_NAME=folio LEPTOS_SITE_ROOT="$ROOT/target/site" LEPTOS_SITE_PKG_DIR=pkg \
    LEPTOS_SITE_ADDR="127.0.0.1:$port" DATABASE_URL="$DB_URL" REDIS_URL="$REDIS_URL" \
    FOLIO_REDIS_PREFIX="$PREFIX" FOLIO_LOG=warn FOLIO_DB_MAX_CONNECTIONS=20 \
    FOLIO_LOGIN_LIMIT_ACCOUNT=1000000/60 FOLIO_LOGIN_LIMIT_IP=1000000/60 \
    FOLIO_REGISTER_LIMIT_IP=1000000/60 FOLIO_PROFILE_EDIT_LIMIT=1000000/60 "${vars[@]}" \
    "$CARGO_TARGET_DIR/release/server" "${args[@]}" >>"$LOG" 2>&1 &
  local pid=$!
  wait_http_200 "http://127.0.0.1:$port/readyz" 30 || { tail -n 20 "$LOG"; exit 1; }
  echo "$pid"
}
sql() { psql "$DB_URL" -qAtX -v ON_ERROR_STOP=1 "$@"; }

say "events benchmark: fresh database folio_bench_events, $USERS users"
psql "$ADMIN_DB_URL" -qc 'DROP DATABASE IF EXISTS folio_bench_events WITH (FORCE)' >/dev/null
redis-cli -u "$REDIS_URL" --scan --pattern "${PREFIX}*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null
: >"$LOG"
SERVER_PID=$(start $PORT)
curl -fsS -o /dev/null -X POST "$BASE/api/register" --data-urlencode "username=benchseed" \
  --data-urlencode "email=benchseed@example.com" --data-urlencode "password=$PASSWORD"
HASH=$(sql -c "SELECT password_hash FROM users WHERE username = 'benchseed'")
sql -v hash="$HASH" -v n="$USERS" <<'SQL'
WITH u AS (
  INSERT INTO users (username, email, password_hash, display_name)
  SELECT 'user' || i, 'user' || i || '@example.com', :'hash', 'User ' || i
  FROM generate_series(1, :n) AS i RETURNING id)
INSERT INTO profiles (user_id) SELECT id FROM u;
SQL

# --- latency: edits at a fixed rate -------------------------------------------------------
# Each thread signs in its share of the users, then paces its edits to the
# target rate; prints one line per phase: name start end sent p50_ms p99_ms.
edits() { # phase-name rate seconds
  python3 - "$PORT" "$USERS" "$PASSWORD" "$1" "$2" "$3" <<'PY'
import http.client, sys, threading, time, json, urllib.parse
port, users, password, name, rate, secs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), float(sys.argv[6])
THREADS = 8
lat, lock = [], threading.Lock()
def worker(k, start):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    mine = [i for i in range(1, users + 1) if i % THREADS == k]
    cookies, versions = {}, {}
    for i in mine:
        body = urllib.parse.urlencode({"identifier": f"user{i}", "password": password})
        conn.request("POST", "/api/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse(); r.read()
        cookies[i] = r.getheader("Set-Cookie").split(";")[0]
        conn.request("POST", "/api/my_profile", "", {"Cookie": cookies[i], "Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse(); versions[i] = json.loads(r.read())["version"]
    barrier.wait()
    interval = THREADS / rate
    n, t0 = 0, start[0]
    while time.time() - t0 < secs:
        i = mine[n % len(mine)]
        due = t0 + k * interval / THREADS + n * interval
        pause = due - time.time()
        if pause > 0: time.sleep(pause)
        body = urllib.parse.urlencode({"display_name": f"User {i}", "bio": f"edit {n}", "avatar_url": "",
                                       "location": "", "website": "", "expected_version": versions[i]})
        s = time.time()
        conn.request("POST", "/api/update_profile", body, {"Cookie": cookies[i], "Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse(); data = r.read()
        took = time.time() - s
        if r.status != 200: sys.exit(f"edit: HTTP {r.status} {data[:200]}")
        versions[i] = json.loads(data)["version"]
        with lock: lat.append(took)
        n += 1
barrier = threading.Barrier(THREADS + 1, action=lambda: start.__setitem__(0, time.time()))
start = [0.0]
threads = [threading.Thread(target=worker, args=(k, start)) for k in range(THREADS)]
for t in threads: t.start()
barrier.wait()
for t in threads: t.join()
end = time.time()
if not lat: sys.exit("no edit was sent")
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(f"{name} {start[0]:.3f} {end:.3f} {len(lat)} {pct(0.5):.2f} {pct(0.99):.2f}")
PY
}
# Commit -> effect of the search consumer, for edits committed in [start, end).
e2e() { # start end
  sql <<SQL
SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY d) * 1000)::numeric, 2) || ' ' ||
       round((percentile_cont(0.99) WITHIN GROUP (ORDER BY d) * 1000)::numeric, 2) || ' ' || count(*)
FROM (SELECT extract(epoch FROM p.processed_at - o.created_at) AS d
      FROM outbox o JOIN processed_events p ON p.event_id = o.event_id AND p.consumer = 'search'
      WHERE o.event_type = 'profile.updated'
        AND o.created_at >= to_timestamp($1) AND o.created_at < to_timestamp($2)) t
SQL
}
settle() { # waits until every profile.updated event was applied by search
  for _ in $(seq 600); do
    [ "$(sql -c "SELECT count(*) FROM outbox o LEFT JOIN processed_events p ON p.event_id = o.event_id AND p.consumer = 'search' WHERE p.event_id IS NULL AND o.event_type = 'profile.updated'")" = 0 ] && return 0
    sleep 0.1
  done
  echo "events not applied after 60 s" >&2; return 1
}

say "edits at rest (20/s) and under load (500/s), $PHASE s each"
REST=$(edits rest 20 "$PHASE"); settle
LOAD=$(edits load 500 "$PHASE"); settle
read -r _ RS RE RN RP50 RP99 <<<"$REST"
read -r _ LS LE LN LP50 LP99 <<<"$LOAD"
read -r RE50 RE99 REN <<<"$(e2e "$RS" "$RE")"
read -r LE50 LE99 LEN <<<"$(e2e "$LS" "$LE")"
RRATE=$(awk -v n="$RN" -v a="$RS" -v b="$RE" 'BEGIN { printf "%.0f", n / (b - a) }')
LRATE=$(awk -v n="$LN" -v a="$LS" -v b="$LE" 'BEGIN { printf "%.0f", n / (b - a) }')

# --- throughput: a backlog drained by one worker ----------------------------------------
say "relay throughput: $BACKLOG events waiting, then one worker (relay + consumers)"
stop_pid "$SERVER_PID"; SERVER_PID=""
sql -v n="$BACKLOG" <<'SQL'
-- Fake users far above the real ids: one profile.updated each (the search
-- consumer indexes them; no foreign key stops it).
INSERT INTO outbox (aggregate_id, aggregate_seq, event_type, schema_version, payload)
SELECT 100000000 + i, 1, 'profile.updated', 1,
       jsonb_build_object('username', 'ghost' || i, 'version', 2, 'display_name', 'Ghost ' || i,
                          'bio', 'A backlog event.', 'location', null, 'website', null, 'avatar_url', null)
FROM generate_series(1, :n) AS i;
SQL
APPLIED_BEFORE=$(sql -c "SELECT count(*) FROM processed_events WHERE consumer = 'search'")
T0=$(date +%s.%N)
WORKER_PID=$(start $WORKER_PORT --worker FOLIO_INSTANCE=bench-worker)
until [ "$(sql -c 'SELECT count(*) FROM outbox WHERE sent_at IS NULL')" = 0 ]; do sleep 0.05; done
T1=$(date +%s.%N)
until [ "$(sql -c "SELECT count(*) FROM processed_events WHERE consumer = 'search'")" -ge $((APPLIED_BEFORE + BACKLOG)) ]; do sleep 0.05; done
T2=$(date +%s.%N)
stop_pid "$WORKER_PID"; WORKER_PID=""
RELAY_RATE=$(awk -v n="$BACKLOG" -v a="$T0" -v b="$T1" 'BEGIN { printf "%.0f", n / (b - a) }')
APPLY_RATE=$(awk -v n="$BACKLOG" -v a="$T0" -v b="$T2" 'BEGIN { printf "%.0f", n / (b - a) }')

# --- the outbox insert's cost in an edit's transaction ------------------------------------
say "a profile edit's transaction with and without the outbox insert (pgbench, $PHASE s each)"
cat >"$WORK/edit.sql" <<SQL
\set id random(2, $((USERS + 1)))
BEGIN;
UPDATE profiles SET bio = 'pgbench', version = version + 1 WHERE user_id = :id;
UPDATE users SET display_name = 'Bench' WHERE id = :id;
COMMIT;
SQL
cat >"$WORK/edit_outbox.sql" <<SQL
\set id random(2, $((USERS + 1)))
BEGIN;
UPDATE profiles SET bio = 'pgbench', version = version + 1 WHERE user_id = :id;
UPDATE users SET display_name = 'Bench' WHERE id = :id;
WITH next AS (
  INSERT INTO event_sequences AS s (aggregate_id, last_seq) VALUES (:id, 1)
  ON CONFLICT (aggregate_id) DO UPDATE SET last_seq = s.last_seq + 1 RETURNING last_seq)
INSERT INTO outbox (aggregate_id, aggregate_seq, event_type, schema_version, payload)
SELECT :id, last_seq, 'profile.updated', 1,
       '{"username":"bench","version":2,"display_name":"Bench","bio":"pgbench","location":null,"website":null,"avatar_url":null}'
FROM next;
COMMIT;
SQL
pgbench_run() { # script clients -> "tps p50_ms p99_ms"
  rm -f "$WORK"/pgbench_log.*
  (cd "$WORK" && "$PGBENCH" -n -f "$1" -c "$2" -j "$(( $2 > 1 ? 2 : 1 ))" -T "$PHASE" -l --log-prefix=pgbench_log "$DB_URL" >"$WORK/pgbench.out" 2>&1)
  local tps; tps=$(awk '/^tps/ { printf "%.0f", $3 }' "$WORK/pgbench.out")
  local pcts; pcts=$(cat "$WORK"/pgbench_log.* | awk '{ print $3 }' | sort -n | awk '{ a[NR] = $1 } END { printf "%.2f %.2f", a[int(NR * 0.5)] / 1000, a[int(NR * 0.99)] / 1000 }')
  echo "$tps $pcts"
}
read -r P1T P1A P1B <<<"$(pgbench_run edit.sql 1)"
read -r O1T O1A O1B <<<"$(pgbench_run edit_outbox.sql 1)"
read -r P16T P16A P16B <<<"$(pgbench_run edit.sql 16)"
read -r O16T O16A O16B <<<"$(pgbench_run edit_outbox.sql 16)"
stop_pid "$SERVER_PID"; SERVER_PID=""

{
  echo "# Folio event pipeline benchmarks"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
  echo "- machine: $(nproc) cores; the server, its worker, Postgres, Redis and the load generator on the same machine"
  echo "- $USERS users; relay and consumers inside the server (default); 8 partitions"
  echo
  echo "| edits | rate reached | HTTP p50 | HTTP p99 | commit → effect p50 | commit → effect p99 | events |"
  echo "|---|---|---|---|---|---|---|"
  echo "| at rest (20/s asked) | $RRATE/s | $RP50 ms | $RP99 ms | $RE50 ms | $RE99 ms | $REN |"
  echo "| under load (500/s asked) | $LRATE/s | $LP50 ms | $LP99 ms | $LE50 ms | $LE99 ms | $LEN |"
  echo
  echo "Commit → effect: from the outbox row's insert to the start of the search consumer's effect transaction, both on Postgres's clock."
  echo
  echo "| backlog drained by one worker | events | relay (published and marked sent) | consumers (applied by search) |"
  echo "|---|---|---|---|"
  echo "| $BACKLOG profile.updated | $BACKLOG | $RELAY_RATE events/s | $APPLY_RATE events/s |"
  echo
  echo "| profile edit transaction (pgbench) | clients | tps | p50 | p99 |"
  echo "|---|---|---|---|---|"
  echo "| without the outbox insert | 1 | $P1T | $P1A ms | $P1B ms |"
  echo "| with the outbox insert | 1 | $O1T | $O1A ms | $O1B ms |"
  echo "| without the outbox insert | 16 | $P16T | $P16A ms | $P16B ms |"
  echo "| with the outbox insert | 16 | $O16T | $O16A ms | $O16B ms |"
} >"$RESULTS"
cat "$RESULTS"
say "written to ${RESULTS#$ROOT/}"
