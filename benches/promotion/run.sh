#!/usr/bin/env bash
# Promotion and rollback on the real control plane: runs the two-controller
# test (tests/it/rollout.rs, two_controllers_promote_through_git_and_roll_
# back_across_a_restart) RUNS times and prints, for each run, the time from
# staging's evidence commit to production's commit (soak 0) next to the
# baseline measured in the same run — a new tag to staging's commit, the
# same loop without the evidence step — as a ratio; the time from
# kube-controller-manager's ProgressDeadlineExceeded to hoist's revert
# commit; and the Deployment GETs the health waits made (by the audit
# log), then the medians.
#
# Needs what the tests need (scripts/test-cluster build, docker-registry).
# Usage: benches/promotion/run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
PATH="$(scripts/test-cluster bin):$PATH"
export PATH CI=true
cargo test --locked --test it --no-run --quiet 2>/dev/null
lines=()
for _ in $(seq "$runs"); do
  line=$(cargo test --locked --quiet --test it rollout::two_controllers -- --nocapture 2>&1 |
    grep '^promotion (soak 0):' || true)
  [ -n "$line" ] || { echo "the test printed no figures" >&2; exit 1; }
  echo "$line"
  lines+=("$line")
done
printf '%s\n' "${lines[@]}" | python3 -c '
import re, statistics, sys
rows = [l for l in sys.stdin if l.strip()]
def median(pattern):
    values = [float(re.search(pattern, r).group(1)) for r in rows]
    return statistics.median(values)
print("medians of %d runs: promotion %.0f ms, %.2fx a plain update (%.0f ms); rollback %.0f ms; %d deployment GETs"
      % (len(rows), median(r"(\d+) ms from staging"), median(r"([0-9.]+)x the"),
         median(r"the (\d+) ms from a new tag"), median(r"Some\((\d+)\) ms"),
         median(r"(\d+) deployment GETs")))
'
