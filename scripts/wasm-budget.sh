#!/usr/bin/env bash
# The WASM every visitor downloads must stay within its budget: gzip -9 of
# the .wasm the release build serves (target/site/pkg, written by
# `cargo leptos build --release`). Prints the size; exits non-zero when it
# is over. The budget is stated here only (ARCHITECTURE.md quotes it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

BUDGET_BYTES=250000

# The newest one: with hashed names an older build's file may still be there.
wasm=$(ls -t "$ROOT"/target/site/pkg/*.wasm 2>/dev/null | head -n 1 || true)
if [ -z "$wasm" ]; then
  echo "no .wasm in target/site/pkg: run cargo leptos build --release first" >&2
  exit 1
fi
raw=$(wc -c <"$wasm")
gz=$(gzip -9 -c <"$wasm" | wc -c)
awk -v f="${wasm#"$ROOT"/}" -v raw="$raw" -v gz="$gz" -v budget="$BUDGET_BYTES" 'BEGIN {
  printf "WASM %s: %d B raw, %d B gzip -9 (%.1f KB); budget %d B, %d B to spare\n", f, raw, gz, gz / 1000, budget, budget - gz }'
if [ "$gz" -gt "$BUDGET_BYTES" ]; then
  echo "the WASM is over its budget by $((gz - BUDGET_BYTES)) B gzip: see bench/NOTES.md, \"WASM size\", for how to measure what costs what" >&2
  exit 1
fi
