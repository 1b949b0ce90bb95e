#!/usr/bin/env bash
# Installs Chromium for the browser client's test (tests/integration/test_browser.py), which
# drives it headless: the Debian package `chromium`, through apt as root (CI runs as root on
# a fresh machine). Idempotent: a `chromium` already on PATH is kept. Prints its path.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install_chromium: chromium is missing; as root: apt-get install -y chromium" >&2
    exit 2
  fi
  exec 9>/tmp/magnetar-install-chromium.lock
  flock 9
  if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends chromium >&2
  fi
fi
command -v chromium
