#!/usr/bin/env bash
# Notification latency: a `hoist run` that keeps running pushes its
# commit of a new tag; the time from that push (seen on the remote) to
# the message at an in-process generic webhook (window 0s) is printed
# next to the same run's Slack fake (window 1s, its message paced behind
# the policy's), as a ratio. Runs tests/it/notify.rs's latency test RUNS
# times and prints the medians.
# Usage: benches/notify/run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
export CI=true
cargo test --locked --test it --no-run --quiet 2>/dev/null
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$runs"); do
  cargo test --locked --quiet --test it notify::the_latency -- --nocapture 2>&1 |
    grep -oE 'notification latency: .*' | tee -a "$out"
done
python3 - "$out" <<'PY'
import re, statistics, sys
rows = open(sys.argv[1]).read().splitlines()
if not rows:
    sys.exit("the test printed no figures")
generic = [int(re.search(r"(\d+) ms from the push to the generic", r).group(1)) for r in rows]
slack = [int(re.search(r"(\d+) ms to Slack", r).group(1)) for r in rows]
g, s = statistics.median(generic), statistics.median(slack)
print(f"medians of {len(rows)} runs: {g:.0f} ms to the generic webhook (window 0s), {s:.0f} ms to Slack (window 1s); ratio {s / max(g, 1):.0f}x")
PY
