#!/usr/bin/env bash
# Webhook request → pushed commit, median of 20, against a local
# docker-registry and git daemon (release build): `hoist run --webhook-addr`
# next to a `hoist run --once` of the same change in the same run, and
# `hoist controller --webhook-addr` against the fake API server; plus the
# registry requests per hour for 100 repositories when webhooks replace a
# 1-minute poll, from the requests one scan measured here.
# Usage: benches/webhook/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release --quiet --test it -- --ignored --nocapture --exact \
    webhook::webhook_to_commit_latency controller::controller_webhook_to_commit_latency \
    2>&1 | grep -v '^$'
