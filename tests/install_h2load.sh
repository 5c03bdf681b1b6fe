#!/usr/bin/env bash
# Installs Debian's nghttp2-client (h2load) for tests/test_bench_h2load.py.
# Run as root (CI is); the test runs this when no h2load is on PATH and fails
# loudly if it cannot. Idempotent: does nothing when h2load is already there.
set -euo pipefail
if command -v h2load >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_h2load.sh: need root for apt-get (or install nghttp2-client by hand)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null
command -v h2load >/dev/null
