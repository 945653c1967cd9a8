#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need (idempotent; root).
set -euo pipefail
pkgs=(clang libclang-dev protobuf-compiler build-essential pkg-config ca-certificates)
if [ "${1:-}" = "--test" ]; then
  # The real etcdctl (v3.4) drives the end-to-end tests; iproute2 (ip netns) the
  # partition tests; openssl, systemd (systemd-analyze), debootstrap and
  # systemd-container (a booted Debian for unit/install tests) the provision tests.
  pkgs+=(etcd-client curl iproute2 openssl systemd debootstrap systemd-container)
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
