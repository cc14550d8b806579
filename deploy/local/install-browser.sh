#!/usr/bin/env bash
# Installs Debian's Chromium and its WebDriver for the dashboard's browser test, only when
# missing (idempotent: a second run does nothing). Needs root or sudo; Debian/Ubuntu only.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: apt-get not found; install chromium and chromium-driver yourself" >&2
    exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
    as_root=(sudo)
fi
echo "install-browser: installing chromium and chromium-driver with apt-get"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver
