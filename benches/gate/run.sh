#!/usr/bin/env bash
# The gate's cost: `hoist scan` of one repository whose 19 newest tags are
# signed by a key the policy does not trust and whose 20th is signed by
# the trusted one, so the policy verifies 20 candidates (19 passed over as
# "bad signature", one selected; 20 is the most it looks at), against the
# same scan without `verify`
# (it selects the newest tag at once), in the same run, paired by
# farm-bench. Each scan starts from an empty state directory: nothing is
# cached. The difference over 20 is the verification time per tag,
# registry requests (digest, .sig manifest, signature blob) included.
# A third pair is the steady state: the verify scan again on its state
# (verdicts and tags from the store).
#
# Needs: docker-registry, curl, python3, farm-bench, cosign
# (scripts/cosign-tool build). Usage: benches/gate/run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-11}
cargo build --release --quiet
hoist=$PWD/target/release/hoist
cosign=$(scripts/cosign-tool bin)/cosign
[ -x "$cosign" ] || { echo "cosign is not built: scripts/cosign-tool build" >&2; exit 1; }
work=$(mktemp -d)
registry_pid=
trap '[ -z "$registry_pid" ] || kill $registry_pid 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/data}}
http: {addr: $addr}
YAML
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -sf "http://$addr/v2/" >/dev/null && break; sleep 0.1; done

# 20 images, 1.0.0 (oldest) … 1.19.0, one layer each.
push() { # tag
  local config layer manifest cd ld
  config=$(printf '{"architecture":"amd64","os":"linux","seed":"%s"}' "$1")
  layer="layer $1"
  cd=$(blob "$config"); ld=$(blob "$layer")
  manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}' \
    "$cd" "${#config}" "$ld" "${#layer}")
  curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "$manifest" "http://$addr/v2/bench/app/manifests/$1" >/dev/null
  echo "sha256:$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)"
}
blob() { # content
  local digest location
  digest="sha256:$(printf '%s' "$1" | sha256sum | cut -d' ' -f1)"
  location=$(curl -sf -X POST -D - -o /dev/null "http://$addr/v2/bench/app/blobs/uploads/" |
    tr -d '\r' | awk -F': ' 'tolower($1)=="location" {print $2}')
  case $location in http*) ;; *) location="http://$addr$location" ;; esac
  curl -sf -X PUT --data-binary "$1" -H 'Content-Type: application/octet-stream' \
    "$location&digest=$digest" >/dev/null
  echo "$digest"
}

cd "$work"
export COSIGN_PASSWORD=bench HOME=$work
"$cosign" generate-key-pair --output-key-prefix trusted >/dev/null 2>&1
"$cosign" generate-key-pair --output-key-prefix other >/dev/null 2>&1
for n in $(seq 0 19); do
  digest=$(push "1.$n.0")
  key=other
  [ "$n" = 0 ] && key=trusted
  "$cosign" sign --key "$key.key" --tlog-upload=false --allow-insecure-registry --yes \
    "$addr/bench/app@$digest" >/dev/null 2>&1
done

objects() { # extra policy lines
  cat <<YAML
apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {name: app, namespace: bench}
spec: {image: $addr/bench/app, insecure: true, interval: 1h}
---
apiVersion: hoist.dev/v1alpha1
kind: ImagePolicy
metadata: {name: app, namespace: bench}
spec:
  imageRepositoryRef: {name: app}
  policy: {semver: {range: '>=1.0.0'}}
$1
---
apiVersion: v1
kind: Secret
metadata: {name: keys, namespace: bench}
stringData:
  cosign.pub: |
$(sed 's/^/    /' trusted.pub)
YAML
}
objects "  verify: {provider: cosign, secretRef: {name: keys}}" > verify.yaml
objects "" > plain.yaml
mkdir -p docker
export DOCKER_CONFIG=$work/docker

# A check before timing: the verify scan selects 1.0.0 and passes 19 over.
"$hoist" scan -f verify.yaml --state-dir check -o json > check.json
python3 - <<'PY'
import json
row = json.load(open("check.json"))[0]
assert row["tag"] == "1.0.0", row
assert len(row["passedOver"]) == 19, row
PY
HOIST_LOG=info "$hoist" scan -f verify.yaml --state-dir counted 2>&1 >/dev/null | grep -o 'requests=[0-9]*' | sed 's/^/first scan with verify: /'
HOIST_LOG=info "$hoist" scan -f verify.yaml --state-dir counted 2>&1 >/dev/null | grep -o 'requests=[0-9]*' | sed 's/^/steady state with verify: /'

echo "== cold: verify (20 candidates) vs no verify (1)"
farm-bench -n "$runs" --timeout 900 \
  --vs "sh -c 'rm -rf $work/s2 && exec $hoist scan -f $work/plain.yaml --state-dir $work/s2'" \
  -- sh -c "rm -rf $work/s1 && exec $hoist scan -f $work/verify.yaml --state-dir $work/s1 || true"
echo "== steady state: verify scan from its store vs the plain one from its"
"$hoist" scan -f plain.yaml --state-dir warm-plain >/dev/null
farm-bench -n "$runs" --timeout 900 \
  --vs "$hoist scan -f $work/plain.yaml --state-dir $work/warm-plain" \
  -- "$hoist" scan -f "$work/verify.yaml" --state-dir "$work/counted"
