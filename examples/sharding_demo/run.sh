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

# shellcheck source=../../scripts/example-setup.sh
source "$root/scripts/example-setup.sh"
example_services
example_binaries example-sharding-demo goverse-cli

"$bin/sharding-demo" --bin "$bin" "$@"
