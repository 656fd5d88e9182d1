#!/usr/bin/env bash
# The example cluster with one command: etcd and PostgreSQL on loopback
# (installed if missing, unless GOVERSE_ETCD and GOVERSE_DATABASE_URL name
# running ones), the schema migrated, three `cluster-node`s and a
# `goverse-gate`, then the commands to try. Ctrl-C stops everything it
# started.
#
#   examples/cluster/run.sh
#
# Settings (environment):
#   GOVERSE_ETCD, GOVERSE_DATABASE_URL  use these services instead of starting them
#   GOVERSE_PREFIX                      the cluster's etcd prefix (default /goverse-example)
#   GOVERSE_EXAMPLE_HTTP                the gate's HTTP address (default 127.0.0.1:8080)
#   GOVERSE_EXAMPLE_GRPC                the gate's gRPC address (default 127.0.0.1:9090)
#   GOVERSE_EXAMPLE_BIN                 a directory holding the built binaries (skips the build)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
http="${GOVERSE_EXAMPLE_HTTP:-127.0.0.1:8080}"
grpc="${GOVERSE_EXAMPLE_GRPC:-127.0.0.1:9090}"
export GOVERSE_PREFIX="${GOVERSE_PREFIX:-/goverse-example}"
logs=$(mktemp -d -t goverse-example.XXXXXX)
pids=()

say() { printf '%s\n' "$*"; }

stop() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    say "stopping the nodes and the gate"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  if declare -F stop_services >/dev/null; then stop_services; fi
  rm -rf "$logs"
  say "stopped"
}
trap stop EXIT
trap 'exit 130' INT TERM

# The services (given, or started here) and the binaries (given, or built).
# shellcheck source=../../scripts/example-setup.sh
source "$root/scripts/example-setup.sh"
example_services
# services.sh, if it ran, set its own cleanup at exit: ours calls it too.
trap stop EXIT
example_binaries example-cluster goverse-cli

# Waits for a process's `ready` line in its log, or fails with the log.
ready() {
  local name=$1 log=$2 pid=$3
  for _ in $(seq 1 300); do
    if grep -q '^ready ' "$log"; then grep -m1 '^ready ' "$log"; return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.2
  done
  say "$name did not start; its log:" >&2
  cat "$log" "$log.err" >&2 || true
  return 1
}

say "migrating the schema"
"$bin/goverse" migrate

for i in 1 2 3; do
  "$bin/cluster-node" --node-id "node-$i" --listen 127.0.0.1:0 --summary-interval 1s --call-metrics \
    >"$logs/node-$i" 2>"$logs/node-$i.err" &
  pids+=($!)
done
for i in 1 2 3; do ready "node-$i" "$logs/node-$i" "${pids[$((i - 1))]}" >/dev/null; done
say "3 nodes up"

# The gate hosts no objects and needs no storage.
env -u GOVERSE_DATABASE_URL "$bin/goverse-gate" --node-id gate-1 --listen 127.0.0.1:0 \
  --http "$http" --grpc "$grpc" >"$logs/gate" 2>"$logs/gate.err" &
pids+=($!)
ready "the gate" "$logs/gate" "$!" >/dev/null

# Until the three share the shards and none is moving: a `Counter` keeps
# its value in memory only, so one called while its shard still moves to
# a node that just joined would start again from 0 there.
balanced() {
  "$bin/goverse" status --json 2>/dev/null | python3 -c '
import json, sys
status = json.load(sys.stdin)
hosts = [n for n in status["nodes"] if n["hosts_objects"]]
sys.exit(0 if status["moving"] == 0 and status["unowned"] == 0
         and len(hosts) == 3 and all(n["shards"] > 0 for n in hosts) else 1)'
}
for _ in $(seq 1 300); do balanced && break; sleep 0.2; done
balanced || { say "the shards did not settle over the three nodes" >&2; exit 1; }

cat <<EOF
cluster ready: node-1, node-2 and node-3 on etcd $GOVERSE_ETCD (prefix $GOVERSE_PREFIX), a gate on http://$http and grpc://$grpc

Call a counter through the gate's HTTP API (plain JSON bodies):
  curl -s -X POST http://$http/api/v1/objects/call/Counter/c1/Add -H 'content-type: application/json' -d '5'
  curl -s -X POST http://$http/api/v1/objects/call/Counter/c1/Get -H 'content-type: application/json' -d '{}'
A persistent object, kept in PostgreSQL:
  curl -s -X POST http://$http/api/v1/objects/call/Visits/v1/Visit -H 'content-type: application/json' -d '{}'
The typed Rust client, over gRPC:
  $bin/cluster-client http://$grpc
The cluster, as an operator sees it:
  GOVERSE_ETCD=$GOVERSE_ETCD GOVERSE_PREFIX=$GOVERSE_PREFIX $bin/goverse status

Logs are in $logs. Ctrl-C stops the cluster.
EOF

# Runs until interrupted, or until a process of the cluster ends.
wait -n "${pids[@]}"
say "a process of the cluster ended; stopping" >&2
exit 1
