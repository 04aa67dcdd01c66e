#!/usr/bin/env bash
# Horizontal scale, end to end and without a browser: two release instances
# behind nginx (scripts/cluster.sh).
#  1. A user registers through nginx; with that session cookie, current_user
#     is answered by both instances, signed in each time (sessions live in
#     Redis, not in an instance).
#  2. Page reads (GET /u/<name>) under load; one instance is killed (-9) in
#     the middle. nginx retries the GETs on the survivor: zero may fail.
#  3. The user is still signed in.
# Before all that, /readyz says the instances read from the replica.
# Prints the numbers; exits non-zero on any failure. Assumes
# `cargo leptos build --release` already ran.
set -euo pipefail
# shellcheck source=cluster.sh
source "$(dirname "$0")/cluster.sh"

LOAD_SECS="${LOAD_SECS:-10}"
KILL_AFTER_SECS="${KILL_AFTER_SECS:-4}"
WORKERS="${WORKERS:-4}"
USERNAME="cluster_user"
PASSWORD="violet-kettle-harbour-93"

LOADERS=()
cleanup() {
  local pid
  for pid in "${LOADERS[@]}"; do kill "$pid" 2>/dev/null || true; done
  cluster_down
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; KEEP_CLUSTER_DIR=1; echo "logs kept in $CLUSTER_DIR/logs" >&2; exit 1; }

cluster_up 2
A="${INSTANCE_NAMES[1]}" B="${INSTANCE_NAMES[2]}"
work="$CLUSTER_DIR/work"
mkdir -p "$work"

# --- 0. the instances read from the replica ----------------------------------------
# (A second or so after start: the replica gets the new database then.)
for _ in $(seq 50); do
  ready=$(curl -s "$CLUSTER_URL/readyz")
  case "$ready" in *'"status":"ok"'*) break ;; esac
  sleep 0.2
done
# /readyz says only the overall state: "ok" with replicas configured is
# every replica answering ("degraded" otherwise).
case "$ready" in
  *'"status":"ok"'*) echo "readyz: $ready" ;;
  *) fail "the instances do not report their replica: $ready" ;;
esac

# --- 1. register, then current_user on both instances -------------------------
say "register $USERNAME through nginx"
status=$(curl -s -o "$work/register.json" -D "$work/register.headers" -w '%{http_code}' \
  -X POST "$CLUSTER_URL/api/register" -H "X-Forwarded-For: 203.0.113.9" \
  --data-urlencode "username=$USERNAME" --data-urlencode "email=$USERNAME@example.com" \
  --data-urlencode "password=$PASSWORD")
[ "$status" = 200 ] || fail "register answered $status: $(cat "$work/register.json")"
# The cookie is Secure (__Host-): curl would not send it back over http, so
# it is carried by hand, like the Rust tests do.
cookie=$(tr -d '\r' <"$work/register.headers" \
  | sed -n 's/^[Ss]et-[Cc]ookie: \(__Host-folio_session=[^;]*\).*/\1/p' | head -n 1)
[ -n "$cookie" ] && [ "$cookie" != "__Host-folio_session=" ] || fail "no session cookie in: $(cat "$work/register.headers")"

# An avatar through nginx: the upload route has its own body limit there
# (every other route keeps 64k). 400 x 400 pixels of noise: about 480 KB.
python3 - "$work/avatar.png" <<'PY'
import os, struct, sys, zlib
w = h = 400
raw = b"".join(b"\0" + os.urandom(w * 3) for _ in range(h))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
open(sys.argv[1], "wb").write(png)
PY
say "upload a $(wc -c <"$work/avatar.png") byte avatar through nginx"
status=$(curl -s -o "$work/avatar.json" -w '%{http_code}' -H "Cookie: $cookie" \
  -H "Accept: application/json" -F "avatar=@$work/avatar.png;type=image/png" \
  "$CLUSTER_URL/settings/profile/avatar")
[ "$status" = 200 ] || fail "the avatar upload through nginx answered $status: $(head -c 300 "$work/avatar.json")"
echo "avatar stored: $(grep -o '"key":"[0-9a-f]*"' "$work/avatar.json" | head -n 1)"

whoami() {  # prints "<instance> <body>"
  curl -s -D "$work/whoami.headers" -o "$work/whoami.json" -X POST \
    -H "Cookie: $cookie" "$CLUSTER_URL/api/current_user" >/dev/null
  printf '%s %s\n' \
    "$(tr -d '\r' <"$work/whoami.headers" | sed -n 's/^x-folio-instance: //Ip' | head -n 1)" \
    "$(cat "$work/whoami.json")"
}

# nginx overwrites X-Forwarded-For: the forged address above is not what
# Folio recorded for the session (nor what its per-IP limits counted).
sessions=$(curl -s -X POST -H "Cookie: $cookie" "$CLUSTER_URL/api/list_sessions")
case "$sessions" in
  *'"ip":"127.0.0.1"'*) echo "session recorded from 127.0.0.1 (forged X-Forwarded-For ignored)" ;;
  *) fail "unexpected session address: $sessions" ;;
esac

say "current_user x10 with the cookie"
signed_in=0; seen_a=0; seen_b=0
for _ in $(seq 10); do
  read -r instance body < <(whoami)
  [ "$body" = "{\"username\":\"$USERNAME\"}" ] && signed_in=$((signed_in + 1))
  [ "$instance" = "$A" ] && seen_a=$((seen_a + 1))
  [ "$instance" = "$B" ] && seen_b=$((seen_b + 1))
done
echo "signed in: $signed_in/10; answered by $A: $seen_a, $B: $seen_b"
[ "$signed_in" = 10 ] || fail "not signed in on every request"
[ "$seen_a" -gt 0 ] && [ "$seen_b" -gt 0 ] || fail "one instance never answered"

# --- 2. page reads under load, one instance killed ------------------------------
say "GET /u/$USERNAME from $WORKERS loops for ${LOAD_SECS}s; kill -9 $A after ${KILL_AFTER_SECS}s"
load() {  # one line per request: "<epoch> <status> <instance>"
  local end=$((SECONDS + LOAD_SECS))
  while [ "$SECONDS" -lt "$end" ]; do
    printf '%s %s\n' "$EPOCHREALTIME" \
      "$(curl -s -o /dev/null --max-time 15 -w '%{http_code} %header{x-folio-instance}' \
        "$CLUSTER_URL/u/$USERNAME" || echo "000 -")"
  done
}
for ((w = 1; w <= WORKERS; w++)); do
  load >"$work/load.$w" &
  LOADERS+=($!)
done
sleep "$KILL_AFTER_SECS"
killed_at=$EPOCHREALTIME
kill -9 "${INSTANCE_PIDS[1]}"
for pid in "${LOADERS[@]}"; do wait "$pid"; done
LOADERS=()

cat "$work"/load.* >"$work/load.all"
read -r sent failed a_before b_before a_after b_after < <(awk -v t="$killed_at" -v a="$A" -v b="$B" '
  { n++ }
  $2 != 200 { f++ }
  $1 <  t && $3 == a { ab++ }
  $1 <  t && $3 == b { bb++ }
  $1 >= t && $3 == a { aa++ }
  $1 >= t && $3 == b { ba++ }
  END { printf "%d %d %d %d %d %d\n", n, f, ab, bb, aa, ba }
' "$work/load.all")
retried=$(grep -c 'upstream_status=[0-9-]*, ' "$CLUSTER_DIR/logs/access.log" || true)
echo "requests sent:        $sent"
echo "failed (not 200):     $failed"
echo "before the kill:      $A $a_before, $B $b_before"
echo "after the kill:       $A $a_after, $B $b_after"
echo "retried by nginx:     $retried (tried on two upstreams)"
if [ "$failed" != 0 ]; then
  awk '$2 != 200' "$work/load.all" | head -n 20 >&2
  fail "$failed page reads failed"
fi
[ "$sent" -gt 0 ] || fail "no request was sent"
[ "$a_before" -gt 0 ] && [ "$b_before" -gt 0 ] || fail "load was not spread before the kill"
[ "$a_after" = 0 ] || fail "$A answered after it was killed"

# --- 3. still signed in ------------------------------------------------------------
say "current_user x5 after the kill"
for _ in $(seq 5); do
  read -r instance body < <(whoami)
  [ "$body" = "{\"username\":\"$USERNAME\"}" ] || fail "signed out after the kill: $instance $body"
  [ "$instance" = "$B" ] || fail "answered by $instance after the kill"
done
echo "still signed in (answered by $B)"
say "cluster test passed"
