#!/usr/bin/env bash
# Builds etcd's own load tool, `benchmark` (go.etcd.io/etcd/tools/benchmark) of etcd 3.4.23,
# the version of Debian's etcd-server, from Debian packages only:
#   - golang-go (the Go toolchain) and golang-etcd-server-dev (etcd 3.4.23's library
#     packages and every dependency of the tool, under /usr/share/gocode);
#   - tools/benchmark itself, which no binary package ships, from Debian's source tarball
#     etcd_3.4.23.orig.tar.gz (from the pool of the apt mirror this machine uses), checked
#     against the sha256 that Debian's etcd_3.4.23-4.dsc lists.
# The tool is built in GOPATH mode (no module downloads).
#
# Usage: bash tests/bench/build-benchmark.sh [OUTPUT]   (default /var/tmp/etcd-benchmark/etcd-benchmark)
# Does nothing if OUTPUT exists.
set -euo pipefail
out=${1:-/var/tmp/etcd-benchmark/etcd-benchmark}
[ -x "$out" ] && exit 0
work=${BENCH_BUILD_DIR:-/var/tmp/etcd-benchmark/build}
orig=etcd_3.4.23.orig.tar.gz
orig_sha256=055c608c4898d25f23aefbc845ff074bf5e8a07e61ed41dbd5cc4d4f59c93093

if ! dpkg -s golang-go golang-etcd-server-dev >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends golang-go golang-etcd-server-dev curl ca-certificates
fi

mirror() {  # the first Debian archive URL in this machine's apt sources
  local m
  m=$(sed -n 's#^URIs:[[:space:]]*\(\S*/debian\)/*$#\1#p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  [ -n "$m" ] || m=$(sed -n 's#^deb[[:space:]]\+\(http\S*/debian\)/*[[:space:]].*#\1#p' /etc/apt/sources.list 2>/dev/null | head -n1)
  echo "${m:-http://deb.debian.org/debian}"
}

mkdir -p "$work"
cd "$work"
if ! echo "$orig_sha256  $orig" | sha256sum -c --status 2>/dev/null; then
  rm -f "$orig"
  curl -fsSLo "$orig" "$(mirror)/pool/main/e/etcd/$orig"
fi
echo "$orig_sha256  $orig" | sha256sum -c -

gopath="$work/gopath"
rm -rf "$gopath" etcd-3.4.23
tar xzf "$orig" etcd-3.4.23/tools/benchmark
mkdir -p "$gopath/src/go.etcd.io/etcd/tools"
mv etcd-3.4.23/tools/benchmark "$gopath/src/go.etcd.io/etcd/tools/"
mkdir -p "$(dirname "$out")"
GO111MODULE=off GOFLAGS='' GOPATH="$gopath:/usr/share/gocode" GOCACHE="$work/gocache" \
  go build -o "$out.tmp" go.etcd.io/etcd/tools/benchmark
mv "$out.tmp" "$out"
echo "built $out"
