#!/usr/bin/env bash
# Where does the server's CPU go under load? Starts the release server on the
# benchmark's database (run `make bench` or `./scripts/bench.sh --smoke`
# first), drives one scenario with wrk at concurrency 64 and samples the
# server with perf; prints the split by binary (kernel / server / libc) and
# the top symbols. The findings in bench/NOTES.md were taken this way.
#
#   ./scripts/profile.sh hot                  get_profile, one hot username
#   ./scripts/profile.sh page                 /u/user1 (stored page)
#   ./scripts/profile.sh page FOLIO_PAGE_CACHE_PAGES=0   rendered every time
#   ./scripts/profile.sh healthz              every layer, no work
set -euo pipefail
source "$(dirname "$0")/common.sh"

scenario="${1:-hot}"; shift || true
ensure_services
ensure_wrk
if ! command -v perf >/dev/null; then say "installing perf"; apt_install linux-perf; fi
BIN="$CARGO_TARGET_DIR/release/server"
[ -x "$BIN" ] || { echo "no release build: run make bench first" >&2; exit 1; }
DB_URL="${DATABASE_URL%/*}/folio_bench"
psql "$DB_URL" -Atc 'SELECT 1 FROM users LIMIT 1' >/dev/null 2>&1 \
  || { echo "no seeded folio_bench database: run make bench (or ./scripts/bench.sh --smoke) first" >&2; exit 1; }

WORK="$(mktemp -d)"; PORT=3301; BASE="http://127.0.0.1:$PORT"
release_server "$PORT" DATABASE_URL="$DB_URL" REDIS_URL="$REDIS_URL" \
  FOLIO_LOG=warn FOLIO_REDIS_PREFIX="bench:" "$@" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_http_200 "$BASE/readyz" 10 || { cat "$WORK/server.log" >&2; exit 1; }

case "$scenario" in
  hot) path=/api/get_profile
       printf "wrk.method='POST'\nwrk.body='username=user1'\nwrk.headers['Content-Type']='application/x-www-form-urlencoded'\n" >"$WORK/s.lua" ;;
  page) path=/u/user1; echo "" >"$WORK/s.lua" ;;
  healthz) path=/healthz; echo "" >"$WORK/s.lua" ;;
  *) echo "usage: $0 hot|page|healthz [VAR=value ...]" >&2; exit 2 ;;
esac
curl -fsS -o /dev/null -X "$( [ "$scenario" = hot ] && echo POST || echo GET )" \
  "$BASE$path" $( [ "$scenario" = hot ] && echo "-d username=user1" )   # warm

wrk -t2 -c64 -d7s -s "$WORK/s.lua" "$BASE$path" >"$WORK/wrk.txt" &
WRK_PID=$!
sleep 1
# cpu-clock: hardware counters are not available in this VM.
perf record -q -e cpu-clock -F 2000 -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep 5 2>/dev/null
wait "$WRK_PID"
grep -E 'Requests/sec|Latency' "$WORK/wrk.txt"
echo "--- CPU by binary"
perf report -i "$WORK/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -vE '^(#|$)' | head -5
echo "--- top symbols"
perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
  | grep -vE '^(#|$)' | sed -E 's/ +/ /g' | cut -c1-150 | head -30
