#!/usr/bin/env bash
# `hoist controller --flux` at the scale of benches/controller/run.sh: 1,000
# Flux ImagePolicies over 200 Flux ImageRepositories (interval 5 s), and
# `hoist controller` over the same objects as hoist.dev ones, one after the
# other in the same run on the real test control plane. Prints the time
# until every policy is Ready and the peak RSS of each, with their ratios.
# Needs docker-registry, Go, and Flux's CRDs (scripts/flux-tools build).
# Usage: benches/controller/flux.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/flux-tools build
cargo test --release --quiet --test it -- --ignored --nocapture --exact \
    cluster_flux::scale_1000_flux_policies_over_200_repositories 2>&1 | grep -v '^$'
