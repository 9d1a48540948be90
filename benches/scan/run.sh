#!/usr/bin/env bash
# Scan benchmark: 200 repositories x 500 tags in a local docker-registry,
# `hoist scan` cold and warm, against a plain curl loop and skopeo making
# the same tag-list requests in the same run.
#
# Needs: docker-registry, curl, skopeo, GNU time (apt-get install
# docker-registry curl skopeo time), python3. Usage: [REGISTRY_STORAGE=inmemory]
# [REGISTRY=HOST:PORT] benches/scan/run.sh [REPOS] [TAGS]
#
# REGISTRY names a registry already seeded with REPOS x TAGS (seed.py):
# the scale run's seeding takes about 25 minutes, so repeated runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/../.."
repos=${1:-200}
tags=${2:-500}

cargo build --release --quiet
hoist=$PWD/target/release/hoist
work=$(mktemp -d)
registry_pid=
trap '[ -z "$registry_pid" ] || kill $registry_pid 2>/dev/null || true; rm -rf "$work"' EXIT

if [ -n "${REGISTRY:-}" ]; then
  addr=$REGISTRY
  curl -sf "http://$addr/v2/" >/dev/null || { echo "no registry at $addr" >&2; exit 1; }
else
  # REGISTRY_STORAGE=inmemory keeps the registry's data in its memory: about
  # 8 times faster to seed, and millions of tags cost no inodes (the scale
  # run: benches/scan/run.sh 5000 400).
  if [ "${REGISTRY_STORAGE:-filesystem}" = inmemory ]; then
    storage="{inmemory: {}}"
  else
    storage="{filesystem: {rootdirectory: $work/data}}"
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  addr=127.0.0.1:$port
  cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: $storage
http: {addr: $addr}
YAML
  docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do curl -sf "http://$addr/v2/" >/dev/null && break; sleep 0.1; done

  start=$(date +%s.%N)
  python3 benches/scan/seed.py "$addr" "$repos" "$tags"
  echo "seeded $repos repositories x $tags tags in $(echo "$(date +%s.%N) - $start" | bc) s"
fi

# One file per repository, as a fleet repository holds them (a file of
# thousands of documents is past the YAML parser's per-file budget).
objects=$work/objects
mkdir -p "$objects"
for i in $(seq -f '%03g' 0 $((repos - 1))); do
  cat > "$objects/app$i.yaml" <<YAML
---
apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {name: app$i, namespace: bench}
spec: {image: $addr/bench/app$i, insecure: true, interval: 1h}
---
apiVersion: hoist.dev/v1alpha1
kind: ImagePolicy
metadata: {name: app$i, namespace: bench}
spec:
  imageRepositoryRef: {name: app$i}
  policy: {semver: {range: '>=1.0.0'}}
YAML
done

measure() { # label, command...
  local label=$1; shift
  local t0 t1 rss
  t0=$(date +%s%N)
  /usr/bin/time -v -o "$work/time" "$@" >"$work/out" 2>"$work/err" || { cat "$work/err"; exit 1; }
  t1=$(date +%s%N)
  last_ms=$(( (t1 - t0) / 1000000 ))
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time")
  printf '%-34s wall %6d ms   peak RSS %6d KiB' "$label" "$last_ms" "$rss"
}

echo
export DOCKER_CONFIG=$work/docker   # no credentials: anonymous
measure "hoist scan (cold, 8 at once)" "$hoist" --log-level info scan -f "$objects" --state-dir "$work/state" -o json
hoist_cold=$last_ms
requests=$(grep -o 'requests=[0-9]*' "$work/err" | tail -1 | cut -d= -f2)
echo "   requests $requests   policies $(grep -c '"policy"' "$work/out")"
measure "hoist scan (warm, from the store)" "$hoist" --log-level info scan -f "$objects" --state-dir "$work/state" -o json
echo "   requests $(grep -o 'requests=[0-9]*' "$work/err" | tail -1 | cut -d= -f2)"

urls=()
for i in $(seq -f '%03g' 0 $((repos - 1))); do urls+=("http://$addr/v2/bench/app$i/tags/list?n=1000"); done
printf '%s\n' "${urls[@]}" | sed 's/^/url = /' > "$work/curl.cfg"
measure "curl, same requests, 8 at once" curl -s --parallel --parallel-max 8 -K "$work/curl.cfg" -o /dev/null
curl_time=$last_ms
echo "   requests $repos"
measure "curl, same requests, one by one" curl -s -K "$work/curl.cfg" -o /dev/null
echo
if command -v skopeo >/dev/null; then
  cat > "$work/skopeo.sh" <<SH
for i in \$(seq -f '%03g' 0 $((repos - 1))); do skopeo list-tags --tls-verify=false docker://$addr/bench/app\$i >/dev/null; done
SH
  measure "skopeo list-tags loop" bash "$work/skopeo.sh"
  echo
fi
echo "cold hoist / parallel curl: $(echo "scale=2; $hoist_cold / $curl_time" | bc)x"
