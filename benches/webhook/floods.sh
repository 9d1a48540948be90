#!/usr/bin/env bash
# Signed webhooks under connection floods: for no flood, 600 idle
# connections held from one peer and 2,000 from 200 loopback peers, the
# share of valid requests answered 202 and their p50/p99 latency, for a
# baseline binary and for this build, and the ratios (after/before).
# Debug builds unless PROFILE=release.
# Usage: benches/webhook/floods.sh [BASELINE_BINARY]
#   (default baseline: /work/main/target/debug/hoist)
set -euo pipefail
cd "$(dirname "$0")/../.."
baseline=${1:-/work/main/target/debug/hoist}
profile=()
[ "${PROFILE:-debug}" = release ] && profile=(--release)
run() {
    cargo test "${profile[@]}" --quiet --test it -- --ignored --nocapture --exact \
        webhook::webhook_flood_bench 2>/dev/null | grep '^flood '
}
before=$(HOIST_BIN=$baseline run)
after=$(run)
echo "before ($baseline):"; echo "$before"
echo "after (this build):"; echo "$after"
paste <(echo "$before") <(echo "$after") | awk '{
    split($4, b, "/"); split($12, a, "/");
    rb = b[1] / b[2]; ra = a[1] / a[2];
    printf "%-16s accepted %5.1f%% -> %5.1f%%  p50 %8.2f -> %8.2f ms (x%.2f)  p99 %8.2f -> %8.2f ms (x%.2f)\n",
        $2, 100 * rb, 100 * ra, $6, $14, ($6 > 0 ? $14 / $6 : 0), $8, $16, ($8 > 0 ? $16 / $8 : 0)
}'
