#!/usr/bin/env bash
# Run Folio for development: http://127.0.0.1:3000 with hot reload.
set -euo pipefail
source "$(dirname "$0")/common.sh"
ensure_tools
ensure_services
exec cargo leptos watch
