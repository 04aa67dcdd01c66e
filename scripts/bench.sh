#!/usr/bin/env bash
# Benchmarks (`make bench`): seeds a fresh database, starts the release server
# and drives it with wrk. Prints one Markdown table and writes it to
# bench/results.md (or bench/out/ with --smoke); then the event pipeline's
# numbers (scripts/bench-events.sh, bench/events.md), people search's
# (scripts/bench-search.sh, bench/search.md) and the million-user run
# (scripts/bench-scale.sh, bench/scale.md).
#
#   ./scripts/bench.sh                 3 rounds of 5 s per scenario, 10 000 users
#   ./scripts/bench.sh --rounds 5 --duration 10
#   ./scripts/bench.sh --smoke         1 round of 1 s per scenario, 200 users (make test)
#   ./scripts/bench.sh --replicas      only the replica rows (with the ceilings and the
#                                      hot key they compare with), into bench/out/
#
# This machine is shared and noisy: the same build's ceiling moved by 30 %
# between two minutes. So each round runs the ceilings and the scenarios
# back to back, a row reports the median of its rounds, and a ratio is the
# median of the per-round ratios (scenario / ceiling of the same round).
set -euo pipefail
source "$(dirname "$0")/common.sh"

DURATION=5
ROUNDS=3
USERS=10000
SMOKE=""
ONLY_REPLICAS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1; DURATION=1; ROUNDS=1; USERS=200 ;;
    --replicas) ONLY_REPLICAS=1 ;;
    --duration) DURATION="$2"; shift ;;
    --duration=*) DURATION="${1#*=}" ;;
    --rounds) ROUNDS="$2"; shift ;;
    --rounds=*) ROUNDS="${1#*=}" ;;
    *) echo "usage: $0 [--smoke] [--replicas] [--duration SECS] [--rounds N]" >&2; exit 2 ;;
  esac
  shift
done

ensure_tools
ensure_services
ensure_wrk

say "release build (cargo leptos)"
cargo leptos build --release

WORK="$ROOT/bench/out"   # git-ignored
mkdir -p "$WORK"
# One run at a time on this machine: runs share the port, the database, the
# Redis prefix and bench/out/ (and would skew each other's numbers anyway).
exec 9>"$WORK/.lock"
if ! flock -n 9; then say "another benchmark is running; waiting for it"; flock 9; fi
if [ -n "$SMOKE" ]; then RESULTS="$WORK/results.md"
elif [ -n "$ONLY_REPLICAS" ]; then RESULTS="$WORK/results-replicas.md"
else RESULTS="$ROOT/bench/results.md"; fi
PORT=3300
BASE="http://127.0.0.1:$PORT"
PREFIX="bench:"
BENCH_DB_URL="${DATABASE_URL%/*}/folio_bench"
ADMIN_DB_URL="${DATABASE_URL%/*}/postgres"
PASSWORD="violet-kettle-harbour-93"
SERVER_PID=""
PEAK_RSS_KB=0

stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    local hwm; hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
    [ "${hwm:-0}" -gt "$PEAK_RSS_KB" ] && PEAK_RSS_KB=$hwm
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
PAIR_DIR=""
cleanup() {
  stop_server
  if [ -n "${PRIMARY_ONLY_PID:-}" ]; then kill "$PRIMARY_ONLY_PID" 2>/dev/null || true; wait "$PRIMARY_ONLY_PID" 2>/dev/null || true; fi
  if [ -n "$PAIR_DIR" ]; then stop_pg_pair "$PAIR_DIR"; rm -rf "$PAIR_DIR"; fi
}
trap cleanup EXIT

start_server() { # extra VAR=value settings (DATABASE_URL=… overrides the bench database)
  say "starting the release server on $BASE $*"
  release_server "$PORT" DATABASE_URL="$BENCH_DB_URL" REDIS_URL="$REDIS_URL" \
    FOLIO_BENCH_ENDPOINTS=on FOLIO_LOG=warn \
    FOLIO_REDIS_PREFIX="$PREFIX" FOLIO_LOGIN_LIMIT_ACCOUNT=1000000/60 \
    FOLIO_LOGIN_LIMIT_IP=1000000/60 FOLIO_REGISTER_LIMIT_IP=1000000/60 "$@" \
    >>"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do
    if curl -fsS "$BASE/readyz" >/dev/null 2>&1; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$WORK/server.log"; exit 1; }
    sleep 0.1
  done
  echo "the server did not become ready; see $WORK/server.log" >&2; exit 1
}

redis_cmd() { redis-cli -u "$REDIS_URL" "$@"; }
clear_bench_keys() {
  redis_cmd --scan --pattern "${PREFIX}*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null
}

# --- database ------------------------------------------------------------------
# Seeds the database of the running server ($1: its URL) with $USERS users.
# One real registration gives a PHC hash of $PASSWORD that every seeded user
# shares.
seed_users() {
  local db_url="$1" hash
  curl -fsS -o /dev/null -X POST "$BASE/api/register" \
    --data-urlencode "username=benchseed" --data-urlencode "email=benchseed@example.com" \
    --data-urlencode "password=$PASSWORD"
  hash=$(psql "$db_url" -Atc "SELECT password_hash FROM users WHERE username = 'benchseed'")
  psql "$db_url" -qv ON_ERROR_STOP=1 -v hash="$hash" -v n="$USERS" >/dev/null <<'SQL'
WITH u AS (
  INSERT INTO users (username, email, password_hash, display_name)
  SELECT 'user' || i, 'user' || i || '@example.com', :'hash', 'User ' || i
  FROM generate_series(1, :n) AS i
  RETURNING id, username
)
INSERT INTO profiles (user_id, bio, location, website)
SELECT id, 'Bio of ' || username || '. Writes about distributed systems and caching.',
       'Lisbon', 'https://' || username || '.example.org/'
FROM u;
SQL
}

say "fresh database folio_bench, $USERS users"
psql "$ADMIN_DB_URL" -qc 'DROP DATABASE IF EXISTS folio_bench WITH (FORCE)' >/dev/null
clear_bench_keys
: >"$WORK/server.log"
start_server   # creates and migrates folio_bench
seed_users "$BENCH_DB_URL"
redis_cmd SET "${PREFIX}bench:ceiling" "ceiling B: one redis GET" >/dev/null

# --- wrk -------------------------------------------------------------------------
# Shared by every scenario: counts non-2xx answers per thread, and prints one
# machine-readable line from done().
cat >"$WORK/common.lua" <<'LUA'
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end
non2xx = 0
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("non2xx") or 0) end
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d non2xx=%d socket=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    bad, e.connect + e.read + e.write + e.timeout, summary.requests))
end
LUA
lua_script() { # name, body
  { cat "$WORK/common.lua"; printf '%s\n' "$2"; } >"$WORK/$1.lua"
}
lua_script get "-- plain GET of the URL"
lua_script hot "wrk.method = 'POST'
wrk.body = 'username=user1'
wrk.headers['Content-Type'] = 'application/x-www-form-urlencoded'"
# The same hot key read by a signed-in reader: the cost of looking up the
# reader's recent writes (read-your-writes) on every public read.
signed_in_script() { # name, session token
  lua_script "$1" "wrk.method = 'POST'
wrk.body = 'username=user1'
wrk.headers['Content-Type'] = 'application/x-www-form-urlencoded'
wrk.headers['Cookie'] = '__Host-folio_session=$2'"
}
lua_script spread "local n = $USERS
local headers = { ['Content-Type'] = 'application/x-www-form-urlencoded' }
function init(args) math.randomseed(os.time() * 100 + (thread_id or 0)) end
function request()
  return wrk.format('POST', '/api/get_profile', headers, 'username=user' .. math.random(n))
end"
lua_script login "local n = $USERS
local headers = { ['Content-Type'] = 'application/x-www-form-urlencoded' }
function init(args) math.randomseed(os.time() * 100 + (thread_id or 0)) end
function request()
  return wrk.format('POST', '/api/login', headers,
    'identifier=user' .. math.random(n) .. '&password=$PASSWORD')
end"

# Each row: scenario|concurrency|round|rps|p50_us|p99_us|errors
ROWS="$WORK/rows.txt"; : >"$ROWS"
ROUND=1
run_wrk() { # scenario, concurrency, script, path [, base URL]  -> appends a row, echoes the RESULT line
  local scenario=$1 conns=$2 script=$3 path=$4 base=${5:-$BASE} threads=1
  [ "$conns" -gt 1 ] && threads=2
  local out
  # A 10 s timeout: queued logins take seconds, and wrk would count them as
  # errors at its default 2 s instead of measuring them.
  out=$(wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 10s --latency -s "$WORK/$script.lua" "$base$path")
  local line; line=$(grep '^RESULT ' <<<"$out" || true)
  if [ -z "$line" ]; then echo "$out" >&2; echo "wrk printed no result for $scenario" >&2; exit 1; fi
  local rps p50 p99 bad sock
  rps=$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$line")
  p50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$line")
  p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")
  bad=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line")
  sock=$(sed -E 's/.*socket=([0-9]+).*/\1/' <<<"$line")
  printf '%s|%s|%s|%s|%s|%s|%s\n' "$scenario" "$conns" "$ROUND" "$rps" "$p50" "$p99" "$((bad + sock))" >>"$ROWS"
  printf '  %-38s c=%-3s r%s %10s req/s  p50 %6s us  p99 %7s us  errors %s\n' "$scenario" "$conns" "$ROUND" "$rps" "$p50" "$p99" "$((bad + sock))"
}

warm_all() {
  say "warming the cache: every profile read once"
  python3 - "$PORT" "$USERS" <<'PY'
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
headers = {"Content-Type": "application/x-www-form-urlencoded"}
for i in range(1, n + 1):
    conn.request("POST", "/api/get_profile", f"username=user{i}", headers)
    r = conn.getresponse(); r.read()
    if r.status != 200:
        sys.exit(f"user{i}: HTTP {r.status}")
PY
}

# A session token of user $1 (a real sign-in).
sign_in() {
  curl -fsS -o /dev/null -D - -X POST "$BASE/api/login" \
    --data-urlencode "identifier=$1" --data-urlencode "password=$PASSWORD" \
    | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: __Host-folio_session=\([0-9a-f]*\);.*/\1/p' | head -n 1
}
signed_in_script hot_signed_in "$(sign_in user2)"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
curl -fsS -o /dev/null -X POST "$BASE/api/get_profile" -d username=user1   # the hot key
curl -fsS -o /dev/null "$BASE/u/user1"                                       # its page
warm_all
say "scenarios ($ROUNDS rounds of $DURATION s each)"
for c in 1 64; do
  for ROUND in $(seq "$ROUNDS"); do
    run_wrk "ceiling A: GET /bench/static" $c get /bench/static
    run_wrk "ceiling B: GET /bench/redis" $c get /bench/redis
    run_wrk "get_profile warm, hot key" $c hot /api/get_profile
    run_wrk "get_profile warm, hot key, signed in" $c hot_signed_in /api/get_profile
    [ -n "$ONLY_REPLICAS" ] && continue
    run_wrk "get_profile warm, spread keys" $c spread /api/get_profile
    run_wrk "/u/:username page, warm" $c get /u/user1
    # What every request behind the server's layers costs with no work at
    # all: the gap between this and ceiling A is the middleware.
    run_wrk "/healthz (fixed JSON, every layer)" $c get /healthz
  done
done
ROUND=1

if [ -z "$ONLY_REPLICAS" ]; then
  say "login at concurrency 64, /healthz at concurrency 1 meanwhile"
  run_wrk "login (argon2id)" 64 login /api/login &
  LOGIN_PID=$!
  sleep 0.2
  run_wrk "/healthz during login load" 1 get /healthz
  wait "$LOGIN_PID"

  stop_server
  start_server FOLIO_PAGE_CACHE_PAGES=0
  for c in 1 64; do
    for ROUND in $(seq "$ROUNDS"); do run_wrk "/u/:username page, rendered every time" $c get /u/user1; done
  done
fi

stop_server
start_server FOLIO_PROFILE_CACHE=off FOLIO_PAGE_CACHE_PAGES=0
for c in 1 64; do
  for ROUND in $(seq "$ROUNDS"); do run_wrk "get_profile, cache off (Postgres)" $c hot /api/get_profile; done
done
stop_server

# --- replicas ----------------------------------------------------------------------
# A primary and a streaming replica of our own (the machine's Postgres allows
# no replication connections), the same seeded users on it. The cache-off
# rows compare one read answered by the replica with one answered by the
# primary of the same pair; the mixed run shows where reads go when 5 % of
# requests are writes (whose writers then read through their own LSN).
say "a primary and a streaming replica for the replica rows"
PAIR_DIR="$(mktemp -d /tmp/folio-bench-pair.XXXXXX)"
start_pg_pair "$PAIR_DIR" 0
PAIR_URL="postgres://postgres@127.0.0.1:$PG_PAIR_PRIMARY_PORT/folio_bench"
REPLICA_URL="postgres://postgres@127.0.0.1:$PG_PAIR_REPLICA_PORT/folio_bench"
PREFIX="bench:pair:"
clear_bench_keys
start_server DATABASE_URL="$PAIR_URL"   # creates and migrates folio_bench on the pair
seed_users "$PAIR_URL"
stop_server

# Counter values from /metrics: "series value" lines for the replica routing.
routing_counters() {
  curl -fsS "$BASE/metrics" | grep -E '^folio_(db_reads_total|replica_fallbacks_total|replica_lsn_checks_total|profile_stale_reads_total|profile_db_queries_total)' || true
}

# The same server without the replica on the next port: each round reads
# through the replica and through the primary back to back, so that the
# machine's noise falls on both alike.
PRIMARY_ONLY_PID=""
PRIMARY_ONLY_BASE="http://127.0.0.1:$((PORT + 1))"
start_server DATABASE_URL="$PAIR_URL" DATABASE_REPLICA_URLS="$REPLICA_URL" \
  FOLIO_PROFILE_CACHE=off FOLIO_PAGE_CACHE_PAGES=0
release_server "$((PORT + 1))" DATABASE_URL="$PAIR_URL" REDIS_URL="$REDIS_URL" FOLIO_LOG=warn \
  FOLIO_REDIS_PREFIX="$PREFIX" FOLIO_PROFILE_CACHE=off FOLIO_PAGE_CACHE_PAGES=0 \
  >>"$WORK/server.log" 2>&1 &
PRIMARY_ONLY_PID=$!
wait_http_200 "$PRIMARY_ONLY_BASE/readyz" 30 || { tail -n 20 "$WORK/server.log"; exit 1; }
routing_counters >"$WORK/routing.before"
for c in 1 64; do
  for ROUND in $(seq "$ROUNDS"); do
    run_wrk "get_profile, cache off, replica" $c hot /api/get_profile
    run_wrk "get_profile, cache off, primary of the pair" $c hot /api/get_profile "$PRIMARY_ONLY_BASE"
  done
done
routing_counters >"$WORK/routing.after"
stop_server
kill "$PRIMARY_ONLY_PID" 2>/dev/null || true
wait "$PRIMARY_ONLY_PID" 2>/dev/null || true
PRIMARY_ONLY_PID=""

# The mixed run: signed-in workers, each saving its own profile on 5 % of
# its requests and otherwise reading random profiles (half of the reads with
# its session, half anonymously), for $MIXED_SECS s per cache setting.
MIXED_SECS=$((DURATION * 2))
mixed_run() { # label
  local label="$1" out
  clear_bench_keys
  routing_counters >"$WORK/mixed.before"
  out=$(python3 - "$PORT" "$USERS" "$MIXED_SECS" "$PASSWORD" <<'PY'
import http.client, json, random, re, statistics, sys, threading, time, urllib.parse
port, users, seconds, password = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
WORKERS = 16
lock = threading.Lock()
latencies, counts = [], {"reads": 0, "writes": 0, "errors": 0}

def post(conn, path, fields, cookie=None):
    headers = dict(FORM)
    if cookie:
        headers["Cookie"] = f"__Host-folio_session={cookie}"
    started = time.perf_counter()
    conn.request("POST", path, urllib.parse.urlencode(fields), headers)
    response = conn.getresponse()
    body = response.read()
    return response, body, time.perf_counter() - started

def worker(i, start, end):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    me = f"user{i + 1}"
    response, body, _ = post(conn, "/api/login", {"identifier": me, "password": password})
    cookie = re.search(r"__Host-folio_session=([0-9a-f]+)", response.getheader("Set-Cookie") or "").group(1)
    response, body, _ = post(conn, "/api/my_profile", {}, cookie)
    version = json.loads(body)["version"]
    start.wait()
    mine, edits = [], 0
    while time.time() < end[0]:
        if random.random() < 0.05:
            edits += 1
            response, body, took = post(conn, "/api/update_profile", {
                "display_name": f"User {i + 1} ({edits})", "bio": "Edited in the mixed run.",
                "avatar_url": "", "location": "", "website": "", "expected_version": version}, cookie)
            if response.status == 200:
                version = json.loads(body)["version"]
            kind = "writes"
        else:
            signed_in = random.random() < 0.5
            response, body, took = post(conn, "/api/get_profile",
                {"username": f"user{random.randint(1, users)}"}, cookie if signed_in else None)
            kind = "reads"
        mine.append(took)
        with lock:
            counts[kind] += 1
            if response.status != 200:
                counts["errors"] += 1
    with lock:
        latencies.extend(mine)

start, end = threading.Event(), [0.0]
threads = [threading.Thread(target=worker, args=(i, start, end)) for i in range(WORKERS)]
for t in threads: t.start()
time.sleep(1)  # the sign-ins (argon2) are not part of the run
end[0] = time.time() + seconds
began = time.time()
start.set()
for t in threads: t.join()
elapsed = time.time() - began
latencies.sort()
p = lambda q: int(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6)
total = counts["reads"] + counts["writes"]
print(f"RESULT rps={total / elapsed:.1f} p50_us={p(0.5)} p99_us={p(0.99)} errors={counts['errors']} reads={counts['reads']} writes={counts['writes']}")
PY
)
  routing_counters >"$WORK/mixed.after"
  echo "$out"
  local line rps p50 p99 errors
  line=$(grep '^RESULT ' <<<"$out")
  rps=$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$line")
  p50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$line")
  p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")
  errors=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$line")
  printf '%s|%s|%s|%s|%s|%s|%s\n' "$label" 16 1 "$rps" "$p50" "$p99" "$errors" >>"$ROWS"
  routing_summary "$label" "$WORK/mixed.before" "$WORK/mixed.after" "$(sed -E 's/.*reads=([0-9]+) writes=([0-9]+).*/\1 reads, \2 writes/' <<<"$line")" >>"$WORK/routing.md"
}

# One line of the routing table: where the database reads of a run went.
routing_summary() { # label, before, after, what was sent
  python3 - "$@" <<'PY'
import sys
label, before, after, sent = sys.argv[1:5]
def read(path):
    values = {}
    for line in open(path):
        series, value = line.rsplit(" ", 1)
        values[series] = float(value)
    return values
b, a = read(before), read(after)
d = lambda s: a.get(s, 0) - b.get(s, 0)
replica, primary = d('folio_db_reads_total{target="replica"}'), d('folio_db_reads_total{target="primary"}')
share = 100 * replica / (replica + primary) if replica + primary else 0
fallback = lambda r: int(d('folio_replica_fallbacks_total{reason="%s"}' % r))
reasons = ", ".join(f"{r} {fallback(r)}" for r in ("lagging", "error", "timeout", "conflict"))
print(f"| {label} | {sent} | {int(replica)} | {int(primary)} | {share:.1f} % | {reasons} | {int(d('folio_replica_lsn_checks_total'))} | {int(d('folio_profile_stale_reads_total'))} |")
PY
}
: >"$WORK/routing.md"
routing_summary "get_profile, cache off, replica (all rounds)" "$WORK/routing.before" "$WORK/routing.after" "anonymous reads only" >>"$WORK/routing.md"

say "mixed run: 95 % reads, 5 % writes, $MIXED_SECS s, replica configured"
ROUND=1
start_server DATABASE_URL="$PAIR_URL" DATABASE_REPLICA_URLS="$REPLICA_URL" \
  FOLIO_PROFILE_CACHE=off FOLIO_PAGE_CACHE_PAGES=0 FOLIO_PROFILE_EDIT_LIMIT=1000000/60
mixed_run "mixed 95/5, cache off, replica"
stop_server
start_server DATABASE_URL="$PAIR_URL" DATABASE_REPLICA_URLS="$REPLICA_URL" \
  FOLIO_PROFILE_EDIT_LIMIT=1000000/60
mixed_run "mixed 95/5, cache on, replica"
stop_server

# --- sizes -------------------------------------------------------------------------
human() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
brotli_size() {
  if command -v brotli >/dev/null; then brotli -c -q 11 "$1" | wc -c
  elif python3 -c 'import brotli' 2>/dev/null; then
    python3 -c 'import brotli,sys; print(len(brotli.compress(open(sys.argv[1],"rb").read(), quality=11)))' "$1"
  else echo ""; fi
}
size_row() { # label, file
  local raw gz br
  raw=$(wc -c <"$2"); gz=$(gzip -9 -c "$2" | wc -c); br=$(brotli_size "$2")
  printf '| %s | %s | %s | %s |\n' "$1" "$(human "$raw")" "$(human "$gz")" "$( [ -n "$br" ] && human "$br" || echo n/a)"
}

# --- table -------------------------------------------------------------------------
# Median per scenario and concurrency; ratio = median over rounds of the
# scenario's req/s over its ceiling's in the same round (A for pages and
# /healthz, B for get_profile); rows measured on another server run (page
# cache off, profile cache off) are compared with the ceiling's median.
table() {
  python3 - "$ROWS" <<'PY'
import statistics as st, sys
rows = {}
for line in open(sys.argv[1]):
    scenario, conns, rnd, rps, p50, p99, errors = line.rstrip("\n").split("|")
    rows.setdefault((scenario, int(conns)), []).append(
        (int(rnd), float(rps), int(p50), int(p99), int(errors)))
def ceiling_of(scenario):
    # The replica against the primary of the same pair, round by round.
    if scenario == "get_profile, cache off, replica": return "get_profile, cache off, primary of the pair", "the pair's primary"
    if scenario.startswith("get_profile"): return "ceiling B: GET /bench/redis", "B"
    if scenario.startswith("/u/") or scenario.startswith("/healthz (fixed"): return "ceiling A: GET /bench/static", "A"
    return None, None
print("| scenario | concurrency | req/s | p50 | p99 | errors | ratio |")
print("|---|---|---|---|---|---|---|")
for (scenario, conns), runs in rows.items():
    rps = st.median(r[1] for r in runs)
    p50 = st.median(r[2] for r in runs) / 1000
    p99 = st.median(r[3] for r in runs) / 1000
    errors = sum(r[4] for r in runs)
    ratio = ""
    name, letter = ceiling_of(scenario)
    if name and (name, conns) in rows:
        by_round = {r[0]: r[1] for r in rows[(name, conns)]}
        same = [r[1] / by_round[r[0]] for r in runs if r[0] in by_round and by_round[r[0]] > 0]
        own_run = scenario not in ("/u/:username page, rendered every time", "get_profile, cache off (Postgres)",
                                   "get_profile, cache off, primary of the pair")
        if not own_run or not same:
            same = [rps / st.median(by_round.values())]
        ratio = f"{st.median(same):.2f} × {letter}"
    print(f"| {scenario} | {conns} | {rps:.0f} | {p50:.2f} ms | {p99:.2f} ms | {errors} | {ratio} |")
PY
}
{
  echo "# Folio benchmarks"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- app server || echo ' (with uncommitted changes)')"
  echo "- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2/1048576 }' /proc/meminfo); wrk, the server, Postgres and Redis on the same machine"
  echo "- load average before the scenarios: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) (anything else running skews every row)"
  echo "- $USERS seeded users; rounds: $ROUNDS, of $DURATION s per scenario (login: one run); each row is the median of its rounds, each ratio the median of per-round ratios against the ceiling measured in the same round; wrk threads 1 at concurrency 1, 2 at concurrency 64"
  echo
  table
  echo
  echo "Where the database reads went (counters of /metrics over the run; the mixed runs: 16 signed-in workers, 5 % saves of their own profile, reads of random profiles, half with their session):"
  echo
  echo "| run | requests | replica reads | primary reads | replica share | fallbacks | LSN checks | stale reads refused |"
  echo "|---|---|---|---|---|---|---|---|"
  cat "$WORK/routing.md"
  echo
  echo "Peak RSS of the server (VmHWM, largest of the three server runs): $(awk -v k="$PEAK_RSS_KB" 'BEGIN { printf "%.1f MiB", k / 1024 }')"
  echo
  echo "| release asset | raw | gzip -9 | brotli -q 11 |"
  echo "|---|---|---|---|"
  for asset in "$ROOT"/target/site/pkg/*.wasm "$ROOT"/target/site/pkg/*.js; do
    [ -f "$asset" ] && size_row "$(basename "$asset")" "$asset"
  done
} >"$RESULTS"
echo
cat "$RESULTS"
say "written to ${RESULTS#$ROOT/}"

# The event pipeline: latency from commit to effect, relay throughput, and
# what the outbox insert costs an edit (its own table, bench/events.md).
"$ROOT/scripts/bench-events.sh" ${SMOKE:+--smoke}

# People search at a million profiles (20 000 in smoke mode): p50/p99 per
# kind of query, index sizes and plans (bench/search.md).
"$ROOT/scripts/bench-search.sh" ${SMOKE:+--smoke}
if [ -n "$SMOKE" ]; then SEARCH_RESULTS="$WORK/search.md"; else SEARCH_RESULTS="$ROOT/bench/search.md"; fi
append_search_rows "$SEARCH_RESULTS" "$RESULTS"

# 10 000, 100 000 and 1 000 000 users (FOLIO_BENCH_USERS; 2 000 in smoke
# mode) read with Zipf-like popularity: hit ratios, Redis memory per
# profile and per session, Postgres sizes (bench/scale.md, and appended).
"$ROOT/scripts/bench-scale.sh" ${SMOKE:+--smoke} --append "$RESULTS"
