#!/usr/bin/env bash
# Runs the whole test suite: formatting, clippy, unit tests and the end-to-end tests
# (real etcd processes driven by the real etcdctl 3.4 and the etcd-client crate).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
bash scripts/deps.sh --test
export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build -p etcd --bins
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
export ETCD_BIN="$target_dir/debug/etcd"
export ETCDCTL_BIN="${ETCDCTL_BIN:-/usr/bin/etcdctl}"
cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-2}"
