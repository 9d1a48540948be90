#!/usr/bin/env bash
# Time to fail on a messageTemplate bomb: nested loops over range(10000)
# that would render about a gigabyte. hoist checks templates when it loads
# the file, so `hoist run --once` meets the bomb before any network or git
# call (the git URL and registry below are never contacted).
#
#   benches/template/run.sh [HOIST]   (default: target/debug/hoist)
#
# Prints the exit code, wall seconds and peak RSS, and hoist's last line of
# stderr. The run is held to 3 GB of address space and 60 s, so a hoist
# without limits fails there instead of taking the machine.
set -u
hoist=${1:-target/debug/hoist}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/fleet.yaml" <<'YAML'
apiVersion: hoist.dev/v1alpha1
kind: ImageUpdateAutomation
metadata: {name: bomb, namespace: apps}
spec:
  interval: 5m
  git:
    url: https://git.invalid/acme/fleet.git
    checkout: {ref: {branch: main}}
    commit:
      author: {name: hoist-bot, email: bot@example.com}
      messageTemplate: "{% for a in range(10000) %}{% for b in range(10000) %}{{ default }}{% endfor %}{% endfor %}"
  update: {path: ./clusters}
YAML
start=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$work/rss" \
  prlimit --as=3000000000 timeout 60 \
  "$hoist" run -f "$work/fleet.yaml" --once --state-dir "$work/state" \
  >/dev/null 2>"$work/stderr"
code=$?
end=$(date +%s.%N)
printf 'exit %s, %.2f s, peak RSS %s KiB\n' "$code" "$(echo "$end - $start" | bc)" "$(tail -n1 "$work/rss")"
tail -c 400 "$work/stderr" | tail -n 2
