#!/usr/bin/env bash
# Requests per scan with each spec.provider, in steady state (the cloud
# token cached) and on the first scan, against the baseline measured in
# the same run: the same registry and run with a static password from
# config.json. Runs tests/it/identity.rs's runs RUNS times (real
# docker-registry behind a forward proxy, in-process fakes of STS/ECR,
# the GKE metadata server, Entra and ACR's exchange; the object-level
# test runs on the real control plane) and prints each provider's
# figures and their ratio to the baseline's.
#
# Needs what the tests need (docker-registry, htpasswd, openssl;
# scripts/test-cluster build for the object-level line).
# Usage: benches/identity/run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
PATH="$(scripts/test-cluster bin):$PATH"
export PATH CI=true
cargo test --locked --test it --no-run --quiet 2>/dev/null
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$runs"); do
  cargo test --locked --quiet --test it identity:: -- --nocapture --test-threads=1 2>&1 |
    grep -oE '(object-level identity|identity [a-z]+):.*' | tee -a "$out"
done
python3 - "$out" "$runs" <<'PY'
import re, statistics, sys
rows = open(sys.argv[1]).read().splitlines()
runs = int(sys.argv[2])
figures = {}
for row in rows:
    m = re.match(r"identity (\w+): (\d+) identity requests in (\d+) scans; registry requests: first scan (\d+), then ([0-9.]+) per scan", row)
    if m:
        p = m.group(1)
        figures.setdefault(p, []).append((int(m.group(2)), int(m.group(3)), int(m.group(4)), float(m.group(5))))
if "generic" not in figures:
    sys.exit("the baseline printed no figures")
def med(p, i):
    return statistics.median(f[i] for f in figures[p])
base_first, base_steady = med("generic", 2), med("generic", 3)
print(f"\nmedians of {runs} runs (baseline: a static password, {base_first:.0f} requests on the first scan, {base_steady:.2f} per scan after)")
print("provider  identity requests per run  first scan (x baseline)  steady state per scan (x baseline)")
for p in ["aws", "gcp", "azure"]:
    if p in figures:
        print(f"{p:<9} {med(p, 0):>25.0f}  {med(p, 2):>10.0f} ({med(p, 2) / base_first:.2f}x)  {med(p, 3):>19.2f} ({med(p, 3) / base_steady:.2f}x)")
for row in rows:
    if row.startswith("object-level"):
        print(row)
        break
PY
