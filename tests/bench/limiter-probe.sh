#!/usr/bin/env bash
# Builds and runs limiter-probe (see limiter-probe/main.go) with Debian's Go and
# golang.org/x/time from Debian's packages: the rate `etcdctl check perf --load=l`'s
# generator reaches in an idle process and beside a running goroutine, on this machine.
# Usage: bash tests/bench/limiter-probe.sh [SECONDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-5}
if ! dpkg -s golang-go golang-golang-x-time-dev >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends golang-go golang-golang-x-time-dev
fi
work=${LIMITER_PROBE_DIR:-/var/tmp/etcd-limiter-probe}
mkdir -p "$work/gopath/src"
rm -rf "$work/gopath/src/limiter-probe"
cp -r "$here/limiter-probe" "$work/gopath/src/"
GO111MODULE=off GOFLAGS='' GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="$work/gocache" \
  go build -o "$work/limiter-probe" limiter-probe
"$work/limiter-probe" -secs "$secs"
"$work/limiter-probe" -secs "$secs" -busy
