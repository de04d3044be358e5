#!/usr/bin/env bash
# Makes sure Debian's Chromium and its WebDriver (chromium-driver) are installed: the
# dashboard's browser test (tests/suite/dashboard_browser.rs) drives them. Installs both from
# Debian's packages when either is missing. No tool ever downloads a browser of its own.
set -euo pipefail

say() { echo "[chromium] $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
installed() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

if ! installed; then
  say "installing chromium and chromium-driver from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if ! installed; then
  say "ERROR: chromium or chromedriver is still missing after the install"
  exit 1
fi
say "$(chromium --version 2>/dev/null | head -1), $(chromedriver --version 2>/dev/null | head -1)"
