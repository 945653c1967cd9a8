#!/usr/bin/env bash
# The benchmark command: installs what it needs, builds our etcd (release) and etcd's own
# `benchmark` tool, then runs tests/bench/bench.py (Debian's etcd 3.4 and ours, side by side,
# alternating, 2 rounds, 1 and 3 members; about 20 minutes on 2 cores) and writes the table
# into BENCHMARKS.md. Arguments go to bench.py (e.g. --rounds 3, --members 1, --smoke).
#
# Usage (root, Debian 12): bash tests/bench/run.sh [bench.py options]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
bash scripts/deps.sh --bench
cargo build --release --locked -p etcd --bin etcd
bash tests/bench/build-benchmark.sh
exec python3 tests/bench/bench.py --ours "${CARGO_TARGET_DIR:-$PWD/target}/release/etcd" "$@"
