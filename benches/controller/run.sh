#!/usr/bin/env bash
# `hoist controller` at scale: 1,000 ImagePolicies over 200 ImageRepositories
# against the fake API server (tests/it/support/kube.rs) and a local
# docker-registry. Prints peak RSS next to an idle controller's from the same
# run, the time from a new tag to the policy's status (polling, and with
# reconcile.hoist.dev/requestedAt), and API requests per reconcile in the
# steady state. Needs docker-registry. Usage: benches/controller/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release --quiet --test it -- --ignored --nocapture --exact \
    controller::scale_1000_policies_over_200_repositories 2>&1 | grep -v '^$'
