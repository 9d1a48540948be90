#!/usr/bin/env bash
# Rewrite benchmark: 10,000 manifests of ~2 KB, 1,000 of them marked.
# Times, in one run (median of 3): (a) reading every file and doing nothing
# (the floor), (b) `hoist rewrite` when nothing changes, (c) `hoist rewrite`
# changing every marker, and (d) ruamel.yaml round-tripping the marked files
# (the peer a user would script), and prints (b)/(a), (c)/(a), (d)/(a) and
# peak RSS. Needs python3, GNU time; (d) needs `pip install ruamel.yaml`.
# Usage: benches/rewrite/run.sh [FILES]
set -euo pipefail
cd "$(dirname "$0")/../.."
files=${1:-10000}
cargo build --release --quiet
hoist=$PWD/target/release/hoist
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 benches/rewrite/generate.py "$work/tree" "$files" 50
echo "tree: $(find "$work/tree" -type f | wc -l) files, $(du -sh "$work/tree" | cut -f1), $(grep -rl imagepolicy "$work/tree" | wc -l) with markers"

sets() { for p in $(seq 0 49); do printf -- '--set apps:app-%s=ghcr.io/acme/app-%s:%s ' "$p" "$p" "$1"; done; }
ms() { # median wall milliseconds of 3 runs of a command
  local times=()
  for _ in 1 2 3; do
    local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; return 1; }; t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 2p
}
sync
floor=$(ms bash -c "find '$work/tree' -type f -name '*.yaml' -print0 | xargs -0 cat > /dev/null")
# (b): the tree already holds 1.0.0 everywhere.
unchanged=$(ms "$hoist" rewrite "$work/tree" $(sets 1.0.0))
# (c): alternate between two versions so every run changes every marker.
version=1.0.0
change() { if [ "$version" = 1.0.0 ]; then version=2.0.0; else version=1.0.0; fi; "$hoist" rewrite "$work/tree" $(sets "$version"); }
times=()
for _ in 1 2 3; do t0=$(date +%s%N); change >/dev/null; t1=$(date +%s%N); times+=($(( (t1 - t0) / 1000000 ))); done
changing=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)
changes=$("$hoist" rewrite "$work/tree" $(sets 3.0.0) -o json | grep -c '"marker"')
/usr/bin/time -v -o "$work/time" "$hoist" rewrite "$work/tree" $(sets 4.0.0) >/dev/null
rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time")

replace=$(ms python3 benches/rewrite/replace_floor.py "$work/tree")

printf '(a) read every file (floor)      %6d ms\n' "$floor"
printf "(a') read all, replace the marked files atomically, unchanged (python)  %d ms\n" "$replace"
printf '(b) hoist rewrite, no change     %6d ms   (b)/(a) %s\n' "$unchanged" "$(echo "scale=2; $unchanged / $floor" | bc)"
printf "(c) hoist rewrite, %d changes  %6d ms   (c)/(a) %s   (c)/(a') %s   peak RSS %d KiB\n" "$changes" "$changing" "$(echo "scale=2; $changing / $floor" | bc)" "$(echo "scale=2; $changing / $replace" | bc)" "$rss"
if python3 -c 'import ruamel.yaml' 2>/dev/null; then
  peer=$(ms python3 benches/rewrite/ruamel_peer.py "$work/tree" 5.0.0)
  printf '(d) ruamel.yaml round trip       %6d ms   (d)/(a) %s\n' "$peer" "$(echo "scale=2; $peer / $floor" | bc)"
else
  echo "(d) ruamel.yaml: skipped (pip install ruamel.yaml)"
fi
