#!/usr/bin/env bash
# The sharding demo with one command: etcd and PostgreSQL on loopback
# (installed if missing, unless GOVERSE_ETCD and GOVERSE_DATABASE_URL name
# running ones), the binaries built, then `sharding-demo` with the
# arguments given (`--help` lists them: --nodes, --seconds, --kill-every,
# ...). It stops by itself and prints a summary; the services it started
# are stopped and removed at the end, or on Ctrl-C.
#
#   examples/sharding_demo/run.sh [--nodes 5] [--seconds 60]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [ -z "${GOVERSE_ETCD:-}" ] || [ -z "${GOVERSE_DATABASE_URL:-}" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "starting etcd and PostgreSQL needs root (apt-get, runuser); run as root, or set GOVERSE_ETCD and GOVERSE_DATABASE_URL" >&2
    exit 1
  fi
  # shellcheck source=../../scripts/services.sh
  source "$root/scripts/services.sh"
  export GOVERSE_ETCD="$GOVERSE_TEST_ETCD" GOVERSE_DATABASE_URL="$GOVERSE_TEST_DATABASE_URL"
fi

if [ -n "${GOVERSE_EXAMPLE_BIN:-}" ]; then
  bin="$GOVERSE_EXAMPLE_BIN"
else
  if ! command -v protoc >/dev/null 2>&1; then
    echo "installing protoc"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
  fi
  echo "building the demo's node, the gate and the goverse command"
  (cd "$root" && cargo build -q -p example-sharding-demo -p goverse-cli --bins)
  bin="${CARGO_TARGET_DIR:-$root/target}/debug"
fi

"$bin/sharding-demo" --bin "$bin" "$@"
