#!/usr/bin/env bash
# What the examples' run.sh scripts share; meant to be sourced from the
# repository's root directory `$root`.
#
#   example_services          uses the etcd and PostgreSQL that GOVERSE_ETCD and
#                             GOVERSE_DATABASE_URL name; when either is unset,
#                             starts both on loopback with services.sh (which
#                             needs root, installs what is missing, and removes
#                             them at exit: its `stop_services`).
#   example_binaries PKG...   sets `bin` to the directory of the packages'
#                             binaries: GOVERSE_EXAMPLE_BIN if set, else builds
#                             them (installing protoc, which etcd's client
#                             needs, if it is missing).

example_services() {
  if [ -n "${GOVERSE_ETCD:-}" ] && [ -n "${GOVERSE_DATABASE_URL:-}" ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "starting etcd and PostgreSQL needs root (apt-get, runuser); run as root, or set GOVERSE_ETCD and GOVERSE_DATABASE_URL" >&2
    exit 1
  fi
  # shellcheck source=scripts/services.sh
  source "$root/scripts/services.sh"
  export GOVERSE_ETCD="$GOVERSE_TEST_ETCD" GOVERSE_DATABASE_URL="$GOVERSE_TEST_DATABASE_URL"
}

example_binaries() {
  if [ -n "${GOVERSE_EXAMPLE_BIN:-}" ]; then
    bin="$GOVERSE_EXAMPLE_BIN"
    return 0
  fi
  if ! command -v protoc >/dev/null 2>&1; then
    echo "installing protoc"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
  fi
  echo "building $*"
  local packages=()
  for package in "$@"; do packages+=(-p "$package"); done
  (cd "$root" && cargo build -q "${packages[@]}" --bins)
  bin="${CARGO_TARGET_DIR:-$root/target}/debug"
}
