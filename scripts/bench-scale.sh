#!/usr/bin/env bash
# Folio at 10 000, 100 000 and 1 000 000 users, read the way people read:
# a few famous profiles and a long tail (Zipf-like popularity), instead of
# one hot key. For each size: a fresh database seeded in SQL, the release
# server with an empty cache, a warm-up, then a measured run of get_profile
# and of /u/<name> pages; the cache hit ratios of the measured run, Redis
# memory per cached profile and per session, Postgres table and index sizes.
#
#   ./scripts/bench-scale.sh                      10 000, 100 000 and 1 000 000 users
#   ./scripts/bench-scale.sh --users 1000000      one size (several: --users "10000 50000")
#   ./scripts/bench-scale.sh --smoke              2 000 users, 1 s runs (make test)
#   FOLIO_BENCH_USERS="…" make bench              the same through make bench
#
# Popularity: the profile of rank k is read with probability about
# 1 / (k ln N) (Zipf with exponent 1): rank = floor(N ^ u) for u uniform in
# [0, 1), which is what wrk's Lua draws per request. With a million users
# the first 1 000 ranks take half the reads, and half of the reads go to a
# tail that a cache of recent reads mostly misses at first.
#
# Writes bench/scale.md (bench/out/scale.md with --smoke) and appends its
# table to the results file given by --append (scripts/bench.sh passes
# bench/results.md). Needs the release build (scripts/bench.sh builds it).
set -euo pipefail
source "$(dirname "$0")/common.sh"

SIZES="${FOLIO_BENCH_USERS:-10000 100000 1000000}"
SESSIONS=200
SMOKE=""
WARMUP=20
MEASURE=10
CONNS=16
APPEND=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1; SIZES=2000; WARMUP=1; MEASURE=1; SESSIONS=20 ;;
    --users) SIZES="$2"; shift ;;
    --users=*) SIZES="${1#*=}" ;;
    --append) APPEND="$2"; shift ;;
    *) echo "usage: $0 [--smoke] [--users \"N …\"] [--append FILE]" >&2; exit 2 ;;
  esac
  shift
done

ensure_services
ensure_wrk
[ -x "$CARGO_TARGET_DIR/release/server" ] || { say "building the release server"; cargo leptos build --release; }

WORK="$ROOT/bench/out"
mkdir -p "$WORK"
if [ -n "$SMOKE" ]; then RESULTS="$WORK/scale.md"; else RESULTS="$ROOT/bench/scale.md"; fi
PORT=3310
BASE="http://127.0.0.1:$PORT"
PREFIX="bench:scale:"
DB_URL="${DATABASE_URL%/*}/folio_bench_scale"
ADMIN_DB_URL="${DATABASE_URL%/*}/postgres"
PASSWORD="violet-kettle-harbour-93"
SERVER_PID=""

stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap stop_server EXIT

redis_cmd() { redis-cli -u "$REDIS_URL" "$@"; }
clear_keys() {
  redis_cmd --scan --pattern "${PREFIX}*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null
}
start_server() {
  release_server "$PORT" DATABASE_URL="$DB_URL" REDIS_URL="$REDIS_URL" FOLIO_LOG=warn \
    FOLIO_REDIS_PREFIX="$PREFIX" FOLIO_LOGIN_LIMIT_ACCOUNT=1000000/60 \
    FOLIO_LOGIN_LIMIT_IP=1000000/60 FOLIO_REGISTER_LIMIT_IP=1000000/60 \
    >>"$WORK/scale-server.log" 2>&1 &
  SERVER_PID=$!
  wait_http_200 "$BASE/readyz" 60 || { tail -n 20 "$WORK/scale-server.log"; exit 1; }
}
# A counter's value on /metrics (0 when absent).
counter() { curl -fsS "$BASE/metrics" | awk -v s="$1" '$1 == s { print $2; found = 1 } END { if (!found) print 0 }'; }

# Zipf-like reads of get_profile and of /u/ pages.
zipf_script() { # name, users, kind
  cat >"$WORK/$1.lua" <<LUA
local n = $2
local headers = { ['Content-Type'] = 'application/x-www-form-urlencoded' }
function init(args) math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6)) end
local function rank() return math.floor(n ^ math.random()) end
function request()
  if "$3" == "page" then return wrk.format('GET', '/u/user' .. rank()) end
  return wrk.format('POST', '/api/get_profile', headers, 'username=user' .. rank())
end
non2xx = 0
function response(status) if status < 200 or status > 299 then non2xx = non2xx + 1 end end
function done(summary, latency)
  io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
}
# Average MEMORY USAGE of up to $2 keys matching $1 (`head` closing the
# pipe early is expected, not an error).
average_memory() {
  { redis_cmd --scan --pattern "$1" || true; } | head -n "$2" \
    | while read -r key; do redis_cmd MEMORY USAGE "$key" SAMPLES 0; done \
    | awk '{ s += $1; n++ } END { if (n) printf "%.0f", s / n; else print 0 }'
}
field() { sed -E "s/.*$1=([0-9.]+).*/\1/" <<<"$2"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f %%", 100 * a / b; else print "n/a" }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

ROWS="$WORK/scale-rows.md"; : >"$ROWS"
MEMORY="$WORK/scale-memory.md"; : >"$MEMORY"
SIZES_TABLE="$WORK/scale-sizes.md"; : >"$SIZES_TABLE"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$WORK/scale-server.log"

for users in $SIZES; do
  say "$users users: fresh database, empty cache"
  stop_server
  psql "$ADMIN_DB_URL" -qc 'DROP DATABASE IF EXISTS folio_bench_scale WITH (FORCE)' >/dev/null
  clear_keys
  start_server   # creates and migrates the database
  curl -fsS -o /dev/null -X POST "$BASE/api/register" \
    --data-urlencode "username=scaleseed" --data-urlencode "email=scaleseed@example.com" \
    --data-urlencode "password=$PASSWORD"
  hash=$(psql "$DB_URL" -Atc "SELECT password_hash FROM users WHERE username = 'scaleseed'")
  seeded=$(date +%s.%N)
  psql "$DB_URL" -qv ON_ERROR_STOP=1 -v hash="$hash" -v n="$users" >/dev/null <<'SQL'
SET maintenance_work_mem = '512MB';
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
VACUUM ANALYZE users;
VACUUM ANALYZE profiles;
SQL
  seed_secs=$(awk -v a="$seeded" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
  # The seed did not go through the server: start it again so that no
  # instance remembers "no such user" from before.
  stop_server; clear_keys; start_server
  redis_cmd CONFIG RESETSTAT >/dev/null

  for kind in api page; do
    zipf_script "zipf-$kind" "$users" "$kind"
    path=/api/get_profile; [ "$kind" = page ] && path=/
    label="get_profile"; [ "$kind" = page ] && label="/u/:username page"
    wrk -t2 -c"$CONNS" -d"${WARMUP}s" --timeout 10s -s "$WORK/zipf-$kind.lua" "$BASE$path" >/dev/null
    before_hits=$(counter folio_profile_cache_hits_total); before_l1=$(counter folio_profile_l1_hits_total)
    before_miss=$(counter folio_profile_cache_misses_total)
    before_page_hits=$(counter folio_page_cache_hits_total); before_page_miss=$(counter folio_page_cache_misses_total)
    out=$(wrk -t2 -c"$CONNS" -d"${MEASURE}s" --timeout 10s --latency -s "$WORK/zipf-$kind.lua" "$BASE$path")
    line=$(grep '^RESULT ' <<<"$out")
    hits=$(( $(counter folio_profile_cache_hits_total) - before_hits ))
    l1=$(( $(counter folio_profile_l1_hits_total) - before_l1 ))
    miss=$(( $(counter folio_profile_cache_misses_total) - before_miss ))
    page_hits=$(( $(counter folio_page_cache_hits_total) - before_page_hits ))
    page_miss=$(( $(counter folio_page_cache_misses_total) - before_page_miss ))
    lookups=$((hits + miss))
    if [ "$kind" = page ]; then page_ratio=$(ratio "$page_hits" $((page_hits + page_miss))); else page_ratio="–"; fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$users" "$label" \
      "$(field rps "$line")" "$(ms "$(field p50_us "$line")")" "$(ms "$(field p99_us "$line")")" \
      "$(ratio "$hits" "$lookups")" "$(ratio "$l1" "$lookups")" "$page_ratio" "$(field errors "$line")" >>"$ROWS"
    tail -n 1 "$ROWS"
  done

  # Memory: what Redis holds per cached profile and per session.
  profile_keys=$(redis_cmd --scan --pattern "${PREFIX}profile:*" | wc -l)
  profile_bytes=$(average_memory "${PREFIX}profile:*" 500)
  python3 - "$PORT" "$SESSIONS" "$PASSWORD" "$users" <<'PY'
import http.client, sys
port, sessions, password, users = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
conn = http.client.HTTPConnection("127.0.0.1", port)
headers = {"Content-Type": "application/x-www-form-urlencoded"}
for i in range(sessions):
    body = f"identifier=user{1 + i % users}&password={password}"
    conn.request("POST", "/api/login", body, headers)
    r = conn.getresponse(); r.read()
    if r.status != 200:
        sys.exit(f"login {i}: HTTP {r.status}")
PY
  session_bytes=$(average_memory "${PREFIX}session:*" "$SESSIONS")
  index_bytes=$(average_memory "${PREFIX}user_sessions:*" "$SESSIONS")
  used=$(redis_cmd INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')
  printf '| %s | %s | %s B | %s B | %s B | %s |\n' "$users" "$profile_keys" "$profile_bytes" \
    "$session_bytes" "$index_bytes" "$(mib "$used")" >>"$MEMORY"

  psql "$DB_URL" -At -F '|' -c "
    SELECT '$users', '$seed_secs s',
           pg_size_pretty(pg_relation_size('users')), pg_size_pretty(pg_indexes_size('users')),
           pg_size_pretty(pg_relation_size('profiles')), pg_size_pretty(pg_indexes_size('profiles')),
           pg_size_pretty(pg_total_relation_size('users') + pg_total_relation_size('profiles')),
           pg_size_pretty(pg_database_size(current_database()))" \
    | awk -F'|' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8 }' >>"$SIZES_TABLE"
done
stop_server
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "# Folio at $(echo "$SIZES" | sed 's/ /, /g') users, Zipf-like reads"
  echo
  echo "\`scripts/bench-scale.sh${SMOKE:+ --smoke}\`, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD), $(nproc) CPUs shared by wrk, the server, Postgres and Redis; load average $LOAD_BEFORE before, $LOAD_AFTER after."
  echo "Each size: a fresh database, an empty Redis and a new server; ${WARMUP} s of warm-up, then ${MEASURE} s measured, wrk with $CONNS connections; profile of rank k read with probability about 1 / (k ln N). Hit ratios are of the measured run: Redis+L1 (all lookups the profile cache answered), L1 alone (in-process, 2 s), and for pages the stored-page cache (1 000 pages per instance)."
  echo
  echo "| users | reads | req/s | p50 ms | p99 ms | profile cache hits | of which L1 | stored-page hits | errors |"
  echo "|---|---|---|---|---|---|---|---|---|"
  cat "$ROWS"
  echo
  echo "Redis after the runs (MEMORY USAGE averaged over up to 500 keys; $SESSIONS sessions created by real sign-ins):"
  echo
  echo "| users | cached profiles | per cached profile | per session | per user's session set | Redis used_memory |"
  echo "|---|---|---|---|---|---|"
  cat "$MEMORY"
  echo
  echo "Postgres (heap and indexes):"
  echo
  echo "| users | seed time | users heap | users indexes | profiles heap | profiles indexes | both, total | database |"
  echo "|---|---|---|---|---|---|---|---|"
  cat "$SIZES_TABLE"
} >"$RESULTS"
cat "$RESULTS"
if [ -n "$APPEND" ]; then { echo; sed 's/^# /## /' "$RESULTS"; } >>"$APPEND"; fi
say "written to ${RESULTS#$ROOT/}"
