#!/usr/bin/env bash
# Builds etcd and starts a single member with etcd's defaults: name "default", data in
# ./default.etcd, clients on http://localhost:2379. Extra arguments are passed to etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
bash scripts/deps.sh
cargo build --release -p etcd --bin etcd
target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/etcd" "$@"
