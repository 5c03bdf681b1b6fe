#!/usr/bin/env bash
# Installs Debian's prometheus (promtool) for tests/test_metrics.py.
# Run as root (CI is); the test runs this when no promtool is on PATH and fails
# loudly if it cannot. Idempotent: does nothing when promtool is already there.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_promtool.sh: need root for apt-get (or install prometheus by hand)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null
