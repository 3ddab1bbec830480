#!/usr/bin/env bash
# Installs Debian's chromium for tests/test_search_page.py (the search page rendered in a real headless
# browser). Idempotent: it only calls apt-get when no chromium is on PATH. Run as root (or with sudo).
set -euo pipefail

if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
    echo "browser-setup: chromium present"
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q chromium
