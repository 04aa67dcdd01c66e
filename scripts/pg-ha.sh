#!/usr/bin/env bash
# Folio's production database on one machine, for tests and demos: etcd,
# three Patroni nodes (deploy/postgres-ha/patroni.yml) and HAProxy
# (deploy/postgres-ha/haproxy.cfg), every port on loopback.
#
#   scripts/pg-ha.sh start DIR   installs what is missing (Debian's etcd-server,
#                                patroni, haproxy), starts everything, waits
#                                for a leader and two replicas, and writes
#                                DIR/env (ports, URLs) for the caller to source
#   scripts/pg-ha.sh stop DIR    stops everything it started (safe to repeat)
#   scripts/pg-ha.sh leader DIR  prints the leader's node name (node1, node2, node3)
#   scripts/pg-ha.sh kill DIR N  a dead host: node N's Patroni and Postgres SIGKILLed
#   scripts/pg-ha.sh restart DIR N  starts node N's Patroni again (it rejoins)
#   scripts/pg-ha.sh switchover DIR  a planned switchover to a healthy replica
#
# DIR must be a fresh directory the postgres user can reach (not under a
# 0700 home): Patroni runs Postgres as that user.
set -euo pipefail
source "$(dirname "$0")/common.sh"

cmd="${1:-}"
dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|leader|kill|restart|switchover DIR [N]" >&2; exit 2; }

case "$cmd" in
  start) start_pg_ha "$dir" ;;
  stop) stop_pg_ha "$dir" ;;
  leader) pg_ha_leader "$dir" ;;
  kill) kill_pg_ha_node "$dir" "${3:?node number}" ;;
  restart) start_pg_ha_node "$dir" "${3:?node number}" ;;
  switchover) pg_ha_switchover "$dir" ;;
  *) echo "usage: $0 start|stop|leader|kill|restart|switchover DIR [N]" >&2; exit 2 ;;
esac
