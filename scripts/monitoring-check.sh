#!/usr/bin/env bash
# deploy/monitoring/ checked without running a server: the rules and both
# configurations parse, the promtool unit tests pass (every alert fires when
# it should and stays quiet when it should not), and every alert has a
# severity, a summary, a runbook section and those tests
# (deploy/monitoring/tests/check_alerts.py). The same rules against a real
# Prometheus: scripts/monitoring-test.sh. That every series they read is
# exported by a running server: server/tests/alert_series.rs.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
ensure_prometheus

# check_alerts.py reads YAML: Debian's python3-yaml when the python3 on
# PATH has no yaml module.
PYTHON=python3
if ! python3 -c 'import yaml' 2>/dev/null; then
  PYTHON=/usr/bin/python3
  if ! "$PYTHON" -c 'import yaml' 2>/dev/null; then say "installing python3-yaml"; apt_install python3-yaml; fi
fi

MONITORING="$ROOT/deploy/monitoring"
promtool check rules "$MONITORING/rules.yml"
amtool check-config "$MONITORING/alertmanager.yml"

# prometheus.yml laid out as it runs (promtool checks that the files it
# names exist).
layout="$(mktemp -d)"
trap 'rm -rf "$layout"' EXIT
mkdir "$layout/targets"
cp "$MONITORING/prometheus.yml" "$MONITORING/rules.yml" "$layout/"
echo token >"$layout/metrics-token"
echo '[]' >"$layout/targets/folio.json"
echo '[]' >"$layout/targets/alertmanager.json"
promtool check config "$layout/prometheus.yml"

(cd "$MONITORING" && promtool test rules tests/*.test.yml)
"$PYTHON" "$MONITORING/tests/check_alerts.py"
