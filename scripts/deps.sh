#!/usr/bin/env bash
# Installs the Debian packages (and cargo-installed tools) the build and the tests need
# (idempotent; root).
#   bash scripts/deps.sh          build dependencies
#   bash scripts/deps.sh --dist   + cargo-deb and cargo-generate-rpm (scripts/dist.sh)
#   bash scripts/deps.sh --bench  + what tests/bench needs (reference etcd-server, etcdctl,
#                                 python3, Go and etcd's library sources for its load tool)
#   bash scripts/deps.sh --test   + everything the test suite uses (includes --dist, --bench)
set -euo pipefail
pkgs=(clang libclang-dev protobuf-compiler build-essential pkg-config ca-certificates)
dist=0
# Debian's etcd 3.4 (the reference server), its etcdctl, python3 (the harness), Go and
# etcd's library sources (to build etcd's `benchmark` tool): tests/bench and its smoke test.
bench=(etcd-server etcd-client python3 golang-go golang-etcd-server-dev curl)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=("${bench[@]}")
elif [ "${1:-}" = "--test" ]; then
  # The real etcdctl (v3.4) drives the end-to-end tests; iproute2 (ip netns) the
  # partition tests; openssl, systemd (systemd-analyze), debootstrap and
  # systemd-container (a booted Debian for unit/install/package tests) the provision and
  # package tests; rpm, rpmlint and shellcheck check the rpm and the package scripts.
  pkgs+=(etcd-client curl iproute2 openssl systemd debootstrap systemd-container rpm rpmlint shellcheck "${bench[@]}")
  dist=1
elif [ "${1:-}" = "--dist" ]; then
  dist=1
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    echo "cargo is in $HOME/.cargo/bin; add it to PATH" >&2
  else
    echo "a Rust toolchain (cargo, rustc >= 1.85) is required: https://rustup.rs" >&2
  fi
  exit 1
fi
if [ "$dist" = 1 ]; then
  # Pinned packaging tools, installed once (`cargo deb --version` prints "cargo-deb 3.8.0").
  cargo deb --version 2>/dev/null | grep -q ' 3\.8\.0$' ||
    cargo install --locked cargo-deb --version 3.8.0
  cargo generate-rpm --version 2>/dev/null | grep -q ' 0\.21\.1$' ||
    cargo install --locked cargo-generate-rpm --version 0.21.1
fi
