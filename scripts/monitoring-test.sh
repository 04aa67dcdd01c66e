#!/usr/bin/env bash
# Alerts, end to end: two release instances behind nginx (scripts/cluster.sh)
# on a Redis of their own, scraped with the metrics token by a real
# Prometheus evaluating deploy/monitoring/rules.yml, which sends to a real
# Alertmanager.
#  1. Both instances are scraped, no alert is active, and the SLO recordings
#     count real requests under their real route labels.
#  2. Redis is stopped and folio-2 killed (-9), together. FolioRedisUnavailable
#     (folio-1) and FolioInstanceDown (folio-2) reach Alertmanager, routed to
#     the receiver of their severity, no sooner than their rule's `for:` and
#     no later than `for:` + one scrape + two evaluations + SLACK_SECS (the
#     promise of prometheus.yml). FolioInstanceDown does not fire for folio-1
#     (an instance without Redis still answers Prometheus), nor
#     FolioAllInstancesDown.
#  3. Redis is started again: FolioRedisUnavailable leaves Alertmanager;
#     FolioInstanceDown stays.
# Shorter intervals than production (MONITORING_* below); the `for:` of
# each rule is the real one, read from Prometheus. The machine's Redis is
# never touched. Assumes `cargo leptos build --release` already ran.
set -euo pipefail
# shellcheck source=cluster.sh
source "$(dirname "$0")/cluster.sh"

export MONITORING_SCRAPE_INTERVAL="${MONITORING_SCRAPE_INTERVAL:-2s}"
export MONITORING_EVALUATION_INTERVAL="${MONITORING_EVALUATION_INTERVAL:-1s}"
SCRAPE_SECS="${MONITORING_SCRAPE_INTERVAL%s}"
EVALUATION_SECS="${MONITORING_EVALUATION_INTERVAL%s}"
# Time for the alert to travel to Alertmanager, and for a loaded machine.
SLACK_SECS="${SLACK_SECS:-8}"
# How long an instance may take to use Redis again once it is back.
RECOVERY_SECS="${RECOVERY_SECS:-20}"

REDIS_PID=""
REDIS_PORT=""
cleanup() {
  cluster_down
  if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
  if [ -n "${REDIS_DIR:-}" ]; then rm -rf "$REDIS_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL: $*" >&2
  KEEP_CLUSTER_DIR=1
  echo "logs kept in $CLUSTER_DIR/logs" >&2
  exit 1
}

# --- our own Redis -------------------------------------------------------------------
if ! command -v redis-server >/dev/null; then say "installing redis-server"; apt_install redis-server; fi
REDIS_DIR="$(mktemp -d /tmp/folio-monitoring-redis.XXXXXX)"
start_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" &
  REDIS_PID=$!
  local _
  for _ in $(seq 50); do redis_answers 127.0.0.1 "$REDIS_PORT" && return 0; sleep 0.1; done
  echo "our Redis on $REDIS_PORT never answered" >&2
  return 1
}
stop_redis() {
  kill "$REDIS_PID"
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=""
}
REDIS_PORT="$(free_port)"
start_redis
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
say "our own Redis on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"

cluster_up 2
A="${INSTANCE_NAMES[1]}" B="${INSTANCE_NAMES[2]}"

# --- Prometheus and Alertmanager queries ----------------------------------------------
# promql EXPR: the result vector, as JSON ([] when Prometheus does not answer).
promql() {
  local body
  body=$(curl -sf --max-time 5 -G "$PROMETHEUS_URL/api/v1/query" --data-urlencode "query=$1") \
    || { echo '[]'; return 0; }
  jq -c '.data.result' <<<"$body"
}
# active_alerts: "<alertname> <instance> <severity> <receiver>" per alert
# Alertmanager holds as active (not resolved, silenced or inhibited).
active_alerts() {
  local body
  body=$(curl -sf --max-time 5 "$ALERTMANAGER_URL/api/v2/alerts?active=true&silenced=false&inhibited=false") \
    || { echo "Alertmanager did not answer" >&2; return 1; }
  jq -r '.[] | select(.status.state == "active")
         | "\(.labels.alertname) \(.labels.instance // "-") \(.labels.severity) \(.receivers[0].name)"' <<<"$body"
}
# for_secs ALERTNAME: the rule's `for:` in seconds, as Prometheus loaded it.
for_secs() {
  local body
  body=$(curl -sf --max-time 5 "$PROMETHEUS_URL/api/v1/rules?type=alert") || { echo null; return 0; }
  jq -r --arg name "$1" '[.data.groups[].rules[] | select(.name == $name) | .duration] | first' <<<"$body"
}

# --- 1. everything scraped, nothing firing ----------------------------------------------
say "waiting for Prometheus to scrape both instances"
for _ in $(seq 60); do
  [ "$(promql 'sum(up{job="folio"})' | jq -r '.[0].value[1] // 0')" = 2 ] && break
  sleep 1
done
up=$(promql 'up{job="folio"}' | jq -r 'map("\(.metric.instance)=\(.value[1])") | sort | join(" ")')
echo "up: $up"
[ "$up" = "$A=1 $B=1" ] || fail "not every instance is scraped (token refused?): $up"

say "some requests, then the SLO recordings"
curl -s -o /dev/null -X POST "$CLUSTER_URL/api/register" \
  --data-urlencode "username=monitored" --data-urlencode "email=monitored@example.com" \
  --data-urlencode "password=violet-kettle-harbour-93"
# Over several scrapes: a series' first sample is where rate() starts, so
# requests made before a route's series was first scraped do not count.
for _ in 1 2 3; do
  for _ in $(seq 5); do
    curl -s -o /dev/null "$CLUSTER_URL/u/monitored"
    curl -s -o /dev/null -X POST "$CLUSTER_URL/api/get_profile" --data-urlencode "username=monitored"
    curl -s -o /dev/null -X POST "$CLUSTER_URL/api/login" \
      --data-urlencode "identifier=monitored" --data-urlencode "password=not-the-password-1"
    curl -s -o /dev/null -X POST "$CLUSTER_URL/api/count_users"
  done
  sleep $((SCRAPE_SECS + 1))
done
for _ in $(seq 30); do
  slis=$(promql 'slo:folio_requests:rate5m > 0' | jq -r 'map("\(.metric.slo)/\(.metric.sli)") | sort | join(" ")')
  [ "$slis" = "profile_reads/availability profile_reads/latency server_functions/availability server_functions/latency sign_in/availability sign_in/latency" ] && break
  sleep 1
done
echo "SLIs with traffic: $slis"
[ "$slis" = "profile_reads/availability profile_reads/latency server_functions/availability server_functions/latency sign_in/availability sign_in/latency" ] \
  || fail "requests missing from the SLO recordings (route labels changed?)"

active="$(active_alerts)" || fail "no answer from Alertmanager"
[ -z "$active" ] || fail "alerts active on a healthy cluster: $active"
firing=$(curl -sf --max-time 5 "$PROMETHEUS_URL/api/v1/alerts" | jq -r '[.data.alerts[] | select(.labels.alertname | startswith("Folio")) | .labels.alertname] | unique | join(" ")')
[ -z "$firing" ] || fail "Prometheus has pending or firing Folio alerts on a healthy cluster: $firing"
echo "no alert active"

# --- 2. Redis stopped, folio-2 killed ----------------------------------------------------
redis_for=$(for_secs FolioRedisUnavailable)
down_for=$(for_secs FolioInstanceDown)
[ -n "$redis_for" ] && [ "$redis_for" != null ] && [ -n "$down_for" ] && [ "$down_for" != null ] \
  || fail "rules not loaded: FolioRedisUnavailable for=$redis_for, FolioInstanceDown for=$down_for"
bound() { echo $(($1 + SCRAPE_SECS + 2 * EVALUATION_SECS + SLACK_SECS)); }
say "stopping Redis and killing $B (-9): FolioRedisUnavailable (for ${redis_for}s) within $(bound "$redis_for")s, FolioInstanceDown (for ${down_for}s) within $(bound "$down_for")s"
# The clock starts first: no alert can be seen sooner than `for:` after it.
outage_started=$EPOCHREALTIME
stop_redis
kill -9 "${INSTANCE_PIDS[2]}"
wait "${INSTANCE_PIDS[2]}" 2>/dev/null || true  # (no "Killed" line from the shell)

redis_seen="" down_seen="" deadline=$(($(bound "$redis_for") > $(bound "$down_for") ? $(bound "$redis_for") : $(bound "$down_for")))
while :; do
  elapsed=$(awk -v a="$outage_started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  active="$(active_alerts)" || fail "no answer from Alertmanager"
  if [ -z "$redis_seen" ] && grep -q '^FolioRedisUnavailable ' <<<"$active"; then
    redis_seen=$elapsed; redis_line=$(grep '^FolioRedisUnavailable ' <<<"$active")
    echo "FolioRedisUnavailable in Alertmanager after ${elapsed}s: $redis_line"
  fi
  if [ -z "$down_seen" ] && grep -q '^FolioInstanceDown ' <<<"$active"; then
    down_seen=$elapsed; down_line=$(grep '^FolioInstanceDown ' <<<"$active")
    echo "FolioInstanceDown in Alertmanager after ${elapsed}s: $down_line"
  fi
  if grep -q '^FolioAllInstancesDown ' <<<"$active"; then fail "FolioAllInstancesDown fired with $A up"; fi
  if grep -q "^FolioInstanceDown $A " <<<"$active"; then fail "FolioInstanceDown fired for $A, which only lost Redis"; fi
  [ -n "$redis_seen" ] && [ -n "$down_seen" ] && break
  awk -v e="$elapsed" -v d="$deadline" 'BEGIN { exit !(e > d) }' \
    && fail "after ${elapsed}s: FolioRedisUnavailable seen at '${redis_seen}', FolioInstanceDown at '${down_seen}'; active: $active"
  sleep 0.5
done

within() {  # within NAME SEEN FOR
  awk -v s="$2" -v f="$3" -v b="$(bound "$3")" 'BEGIN { exit !(s >= f && s <= b) }' \
    || fail "$1 reached Alertmanager after ${2}s: outside [${3}s, $(bound "$3")s]"
}
within FolioRedisUnavailable "$redis_seen" "$redis_for"
within FolioInstanceDown "$down_seen" "$down_for"
[ "$redis_line" = "FolioRedisUnavailable $A page pager" ] || fail "unexpected Redis alert: $redis_line"
[ "$down_line" = "FolioInstanceDown $B ticket tickets" ] || fail "unexpected instance alert: $down_line"
echo "both within their promise, routed by severity"

# --- 3. Redis back -----------------------------------------------------------------------
say "starting Redis again: FolioRedisUnavailable must resolve within ${RECOVERY_SECS}s + a scrape and an evaluation"
start_redis
restarted=$EPOCHREALTIME
resolve_deadline=$((RECOVERY_SECS + SCRAPE_SECS + 2 * EVALUATION_SECS + SLACK_SECS))
while :; do
  elapsed=$(awk -v a="$restarted" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  active="$(active_alerts)" || fail "no answer from Alertmanager"
  grep -q '^FolioRedisUnavailable ' <<<"$active" || break
  awk -v e="$elapsed" -v d="$resolve_deadline" 'BEGIN { exit !(e > d) }' \
    && fail "FolioRedisUnavailable still active ${elapsed}s after Redis came back"
  sleep 0.5
done
echo "FolioRedisUnavailable resolved ${elapsed}s after Redis came back"
grep -q "^FolioInstanceDown $B " <<<"$active" || fail "FolioInstanceDown for $B resolved while $B is still dead: $active"
echo "FolioInstanceDown for $B still active"
say "monitoring test passed"
