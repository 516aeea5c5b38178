#!/bin/sh
# Installs Debian's Chromium for the browser tests (test/e2e), unless it is already there.
# Idempotent: safe to run before every CI run. Needs root (apt-get).
set -eu
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y chromium
/usr/bin/chromium --version
