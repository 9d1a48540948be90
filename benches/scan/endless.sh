#!/usr/bin/env bash
# Peak RSS of `hoist scan` against a registry that never stops paging
# (benches/scan/endless.py). The binary under test is stopped after 30 s
# and kept under 2 GiB of address space, so an unbounded one cannot eat
# the machine; its figure is then a lower bound.
#
# Needs: python3, GNU time (apt-get install time), util-linux prlimit.
# Usage: benches/scan/endless.sh BEFORE_BINARY [AFTER_BINARY]
#   (AFTER_BINARY defaults to target/debug/hoist)
set -euo pipefail
cd "$(dirname "$0")/../.."
before=${1:?usage: endless.sh BEFORE_BINARY [AFTER_BINARY]}
after=${2:-$PWD/target/debug/hoist}
work=$(mktemp -d)
trap 'kill $server_pid 2>/dev/null || true; rm -rf "$work"' EXIT

python3 benches/scan/endless.py > "$work/port" 2>/dev/null &
server_pid=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")
mkdir -p "$work/docker"
cat > "$work/objects.yaml" <<YAML
apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {name: app}
spec: {image: 127.0.0.1:$port/team/app, insecure: true, interval: 1h, timeout: 10m}
YAML

measure() { # binary label → prints "label rss_kib seconds exit"
    local bin=$1 label=$2 state
    state=$(mktemp -d -p "$work")
    local code=0
    ( cd "$work" && DOCKER_CONFIG=$work/docker /usr/bin/time -f '%M %e' -o "$state.time" \
        prlimit --as=$((2 << 30)) timeout 30 "$bin" scan -f objects.yaml \
        --state-dir "$state" -o json >"$state.out" 2>"$state.err" ) || code=$?
    # GNU time puts "Command exited with non-zero status" first, if any.
    read -r rss secs < <(tail -1 "$state.time")
    echo "$label peak_rss_kib=$rss seconds=$secs exit=$code"
    tail -c 400 "$state.err" | sed "s/^/  $label stderr: /"
    eval "${label}_rss=$rss"
}

measure "$before" before
measure "$after" after
echo "ratio before/after peak RSS: $(python3 -c "print(round($before_rss / $after_rss, 1))")"
