#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for tests/test_dashboard.py.
# Run as root (CI is); the test runs this when no chromium is on PATH and fails
# loudly if it cannot. Idempotent: does nothing when chromium is already there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_chromium.sh: need root for apt-get (or install chromium by hand)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null
