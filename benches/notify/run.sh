#!/usr/bin/env bash
# Notification latency.
# - `hoist run`: a run that keeps running pushes its commit of a new tag;
#   the time from that push (seen on the remote) to the message at an
#   in-process generic webhook (window 0s), next to the same run's Slack
#   fake (window 1s, its message paced behind the policy's), as a ratio.
# - `hoist controller` on the test control plane (when scripts/test-cluster
#   has built it): from a new latest tag's event to its message at a
#   generic webhook (window 0s), next to the `hoist run` figure.
# Runs tests/it/notify.rs's two tests RUNS times each and prints medians.
# Usage: benches/notify/run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
export CI=true
if bin=$(scripts/test-cluster bin 2>/dev/null) && [ -x "$bin/kube-apiserver" ]; then
  export PATH="$bin:$PATH"
  cluster=yes
else
  cluster=no
fi
cargo test --locked --test it --no-run --quiet 2>/dev/null
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$runs"); do
  cargo test --locked --quiet --test it notify::the_latency -- --nocapture 2>&1 |
    grep -oE 'notification latency: .*' | tee -a "$out"
  if [ "$cluster" = yes ]; then
    cargo test --locked --quiet --test it notify::the_controller_tells -- --nocapture 2>&1 |
      grep -oE 'controller notification latency: .*' | tee -a "$out"
  fi
done
python3 - "$out" <<'PY'
import re, statistics, sys
rows = open(sys.argv[1]).read().splitlines()
run = [r for r in rows if not r.startswith("controller")]
controller = [r for r in rows if r.startswith("controller")]
if not run:
    sys.exit("the test printed no figures")
generic = [int(re.search(r"(\d+) ms from the push to the generic", r).group(1)) for r in run]
slack = [int(re.search(r"(\d+) ms to Slack", r).group(1)) for r in run]
g, s = statistics.median(generic), statistics.median(slack)
print(f"hoist run, medians of {len(run)} runs: {g:.0f} ms to the generic webhook (window 0s), {s:.0f} ms to Slack (window 1s); ratio {s / max(g, 1):.0f}x")
if controller:
    c = statistics.median(int(re.search(r"(\d+) ms from the event", r).group(1)) for r in controller)
    print(f"hoist controller, median of {len(controller)} runs: {c:.0f} ms from the event to the generic webhook (window 0s); {c / max(g, 1):.1f}x hoist run's")
PY
