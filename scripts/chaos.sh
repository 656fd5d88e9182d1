#!/usr/bin/env bash
# The crash-safety run for longer than CI runs it: three node processes of
# a persistent counter and a goverse-gate on real etcd and PostgreSQL,
# 16 workers incrementing through the gate's HTTP API while nodes are
# killed, restarted and paused past their lease; first with plain calls,
# then with reliable ones. Ends with one summary line per mode and fails
# if any acknowledged increment was lost or applied twice.
#
#   scripts/chaos.sh [seconds per mode]     (default 300)
#
# Installs and starts etcd and PostgreSQL on loopback as scripts/test.sh
# does. See tests/tests/chaos.rs and the book's "Crash safety" section.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh
# The run starts test-node and goverse-gate from the same build.
cargo test --workspace --all-features --all-targets --no-run
GOVERSE_CHAOS_SECONDS="${1:-300}" \
  cargo test --workspace --all-features --test chaos -- --nocapture
