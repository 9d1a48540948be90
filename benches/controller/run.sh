#!/usr/bin/env bash
# `hoist controller` at scale: 1,000 ImagePolicies over 200 ImageRepositories
# (interval 5 s) on the real test control plane (scripts/test-cluster) and a
# local docker-registry, running as deploy/'s ServiceAccount. Prints the time
# until every policy is Ready, peak RSS next to an idle controller's from the
# same run, and API requests and writes per reconcile in the steady state,
# counted from the API server's audit log. Needs docker-registry and Go.
# Usage: benches/controller/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release --quiet --test it -- --ignored --nocapture --exact \
    cluster_controller::scale_1000_policies_over_200_repositories 2>&1 | grep -v '^$'
