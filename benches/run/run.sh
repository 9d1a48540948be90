#!/usr/bin/env bash
# `hoist run --once` on a repository of 10,000 files with 100 markers to
# update, against a local docker-registry and git daemon: cold (first
# clone) and warm (cached clone, after new tags), with wall time, peak RSS
# and per-stage timings from the run report; and, in the same run, the
# floor: `git clone --depth 1` + the same edit + `git commit -a` + `git push`.
# Needs docker-registry, git, python3, GNU time. Usage: benches/run/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet
hoist=$PWD/target/release/hoist
work=$(mktemp -d)
trap 'kill ${registry_pid:-} ${daemon_pid:-} 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

addr=127.0.0.1:$(free_port)
printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s/registry}}\nhttp: {addr: %s}\n' "$work" "$addr" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 & registry_pid=$!
git_port=$(free_port)
mkdir -p "$work/git"
git daemon --export-all --enable=receive-pack --reuseaddr --listen=127.0.0.1 --port="$git_port" --base-path="$work/git" "$work/git" >/dev/null 2>&1 & daemon_pid=$!
for _ in $(seq 100); do curl -sf "http://$addr/v2/" >/dev/null && break; sleep 0.1; done

for p in $(seq 0 49); do python3 scripts/push-tags.py "$addr" "acme/app-$p" 1.0.0 2.0.0 >/dev/null; done
python3 benches/rewrite/generate.py "$work/seed" 10000 50 100 0 "$addr/acme"
git init --quiet --bare --initial-branch=main "$work/git/fleet.git"
git -C "$work/seed" init --quiet --initial-branch=main
git -C "$work/seed" add --all
git -C "$work/seed" -c user.name=seed -c user.email=seed@example.com commit --quiet -m seed
git -C "$work/seed" push --quiet "$work/git/fleet.git" main
echo "repository: $(git -C "$work/seed" ls-files | wc -l) files, $(grep -rl imagepolicy "$work/seed" --include='*.yaml' | wc -l) with markers"

objects=$work/objects.yaml
for p in $(seq 0 49); do
  printf -- '---\napiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {name: app-%s, namespace: apps}\nspec: {image: %s/acme/app-%s, insecure: true, interval: 1s}\n---\napiVersion: hoist.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: app-%s, namespace: apps}\nspec:\n  imageRepositoryRef: {name: app-%s}\n  policy: {semver: {range: "*"}}\n' "$p" "$addr" "$p" "$p" "$p" >> "$objects"
done
printf -- '---\napiVersion: hoist.dev/v1alpha1\nkind: ImageUpdateAutomation\nmetadata: {name: fleet, namespace: apps}\nspec:\n  interval: 5m\n  git:\n    url: git://127.0.0.1:%s/fleet.git\n    checkout: {ref: {branch: main}}\n    commit: {author: {name: hoist, email: hoist@example.com}}\n  update: {path: ./}\n' "$git_port" >> "$objects"
export DOCKER_CONFIG=$work/docker

measure() { # label; runs hoist run --once and prints wall, RSS, timings
  local t0 t1
  t0=$(date +%s%N)
  /usr/bin/time -v -o "$work/time" "$hoist" run -f "$objects" --once --state-dir "$work/state" -o json > "$work/report.json" 2>"$work/err" || { cat "$work/err"; exit 1; }
  t1=$(date +%s%N)
  python3 - "$1" $(( (t1 - t0) / 1000000 )) "$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time")" "$work/report.json" <<'PY'
import json, sys
label, wall, rss, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = json.load(open(path))[0]
t = r["timings"]
print(f"{label:<34} wall {wall:6d} ms   peak RSS {rss // 1024:4d} MiB   changes {len(r['changes']):4d}   "
      f"scan {t['scan_ms']} / checkout {t['checkout_ms']} / rewrite {t['rewrite_ms']} / commit {t['commit_ms']} / push {t['push_ms']} ms"
      + (f"   error: {r['error']}" if r["error"] else ""))
PY
}
measure "hoist run --once (cold: clone)"
for p in $(seq 0 49); do python3 scripts/push-tags.py "$addr" "acme/app-$p" 3.0.0 >/dev/null; done
sleep 2
measure "hoist run --once (warm: fetch)"

# The floor: the same change by hand with git.
t0=$(date +%s%N)
git clone --quiet --depth 1 "git://127.0.0.1:$git_port/fleet.git" "$work/floor"
grep -rl imagepolicy "$work/floor" --include='*.yaml' | xargs sed -i 's/:3\.0\.0 #/:4.0.0 #/'
git -C "$work/floor" -c user.name=floor -c user.email=floor@example.com commit --quiet -am "floor"
git -C "$work/floor" push --quiet origin main
t1=$(date +%s%N)
printf '%-34s wall %6d ms\n' "git clone + sed + commit + push" $(( (t1 - t0) / 1000000 ))
