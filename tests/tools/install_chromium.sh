#!/usr/bin/env bash
# Headless Chromium for the browser page's test (tests/test_workflow.py), from Debian's `chromium` package.
# Without root or apt-get nothing is installed and that test is skipped, with this reason printed.
set -u
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium not installed (needs root and apt-get: apt-get install chromium): the browser page test is skipped"
  exit 0
fi
echo "installing chromium (Debian package) for the browser page test"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1; then
  echo "apt-get could not install chromium: the browser page test is skipped"
fi
exit 0
