#!/usr/bin/env bash
# `hoist sync` of 500 objects (5 Namespaces, 165 Deployments, Services and
# ConfigMaps each) against the fake API server (tests/it/support/kube.rs):
# time, requests and writes for a first sync and a second with nothing
# changed, next to `kubectl apply --server-side` of the same directory
# against the same kind of fake in the same run, when kubectl is installed.
# Usage: benches/sync/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release --quiet --test it -- --ignored --nocapture --exact \
    sync::sync_500_objects 2>&1 | grep -v '^$'
