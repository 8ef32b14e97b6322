#!/usr/bin/env bash
# Makes sure Debian's chromium is installed at /usr/bin/chromium: the dashboard's browser
# tests (tests/dashboard) drive it with Playwright. Playwright's own browser downloads are
# never used. Needs root (CI and the developer machines run as root).
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
