#!/usr/bin/env bash
# Builds the release artifacts into dist/v<version>/ (a directory `etcd-provision download
# --url <base>` can use as a mirror when served at <base>):
#   etcd_<version>-1_amd64.deb        cargo-deb, metadata in etcd/Cargo.toml
#   etcd-<version>-1.x86_64.rpm       cargo-generate-rpm, metadata in etcd/Cargo.toml
#   etcd-v<version>-linux-amd64.tar.gz  etcd-v<version>-linux-amd64/{etcd,etcdutl,etcd-provision,README.md,LICENSE}
#   SHA256SUMS                        covering the three
#
# Usage: bash scripts/dist.sh [--out DIR] [--bin-dir DIR] [--deb-version V]
#   --out DIR       output root (default dist); artifacts go to DIR/v<version>/
#   --bin-dir DIR   package the etcd and etcd-provision binaries found in DIR instead of
#                   running `cargo build --release` (the tests package their debug build)
set -euo pipefail
cd "$(dirname "$0")/.."

out=dist
bin_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
  esac
done

bash scripts/deps.sh --dist
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "no workspace version in Cargo.toml" >&2; exit 1; }

if [ -z "$bin_dir" ]; then
  cargo build --release --locked -p etcd -p provision
  bin_dir="${CARGO_TARGET_DIR:-target}/release"
fi
for b in etcd etcdutl etcd-provision; do
  [ -x "$bin_dir/$b" ] || { echo "$bin_dir/$b missing" >&2; exit 1; }
done

dest="$out/v$version"
rm -rf "$dest"
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
stage=$(mktemp -d "${TMPDIR:-/tmp}/etcd-dist.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# Both packaging tools take `target/release/<bin>` from CARGO_TARGET_DIR: a staging target
# directory with stripped copies (cargo-generate-rpm does not strip).
mkdir -p "$stage/target/release"
for b in etcd etcdutl etcd-provision; do
  strip -o "$stage/target/release/$b" "$bin_dir/$b"
done

CARGO_TARGET_DIR="$stage/target" cargo deb -p etcd --no-build --no-strip -o "$dest/"
CARGO_TARGET_DIR="$stage/target" cargo generate-rpm -p etcd -o "$dest/"

# The release tarball, laid out as upstream's: one top directory with binaries and docs.
top="etcd-v$version-linux-amd64"
mkdir -p "$stage/tar/$top"
cp "$stage/target/release/etcd" "$stage/target/release/etcdutl" \
  "$stage/target/release/etcd-provision" "$stage/tar/$top/"
cp README.md LICENSE "$stage/tar/$top/"
mtime="@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
tar -C "$stage/tar" --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" \
  -cf - "$top" | gzip -n > "$dest/$top.tar.gz"

(cd "$dest" && sha256sum "$top.tar.gz" ./*.deb ./*.rpm | sed 's# \./# #' > SHA256SUMS)
ls -l "$dest"
