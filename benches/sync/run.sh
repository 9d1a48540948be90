#!/usr/bin/env bash
# `hoist sync` of 500 objects (5 Namespaces, 165 Deployments, Services and
# ConfigMaps each) against the real test control plane (scripts/test-cluster):
# time, requests and writes (from its audit log) for a first sync and a
# second with nothing changed, next to `kubectl apply --server-side` of the
# same objects in the same run.
# Usage: benches/sync/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release --quiet --test it -- --ignored --nocapture --exact \
    cluster_sync::sync_500_objects 2>&1 | grep -v '^$'
