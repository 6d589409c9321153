#!/usr/bin/env bash
# Debian's Chromium for the dashboard's browser tests (tests/dashboard.rs),
# installed once (as root, or with sudo) when /usr/bin/chromium is missing.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "the browser tests need Debian's Chromium: run \`apt-get install chromium\` as root" >&2
        exit 1
    fi
    sudo="sudo -n"
fi
echo "installing Debian's chromium for the browser tests"
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
