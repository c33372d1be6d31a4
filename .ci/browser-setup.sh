#!/usr/bin/env bash
# Make Debian's Chromium available to tests/test_browser.py. Idempotent: does nothing when it is
# already there. Installs it with apt-get when running as root (or with password-less sudo);
# otherwise says what to do and exits 1. The browser test uses $VAEKIT_CHROMIUM, else
# /usr/bin/chromium. Playwright drives this Chromium; `playwright install` is never needed.
set -euo pipefail

chromium="${VAEKIT_CHROMIUM:-/usr/bin/chromium}"
version() { "$1" --version 2>/dev/null || true; }  # Debian's wrapper script chatters on stderr

if [ -x "$chromium" ]; then
  echo "browser-setup: Chromium present: $chromium ($(version "$chromium"))"
  exit 0
fi
if [ -n "${VAEKIT_CHROMIUM:-}" ]; then
  echo "browser-setup: \$VAEKIT_CHROMIUM=$VAEKIT_CHROMIUM is not an executable file" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser-setup: no apt-get here: install Chromium and set VAEKIT_CHROMIUM to its path" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo"
  else
    echo "browser-setup: not root and no password-less sudo: run 'apt-get install chromium' as root" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "browser-setup: installing Debian's chromium package"
# Try the package lists already on the machine first; refresh them only if that fails.
if ! $sudo apt-get install -y -q chromium >/dev/null; then
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q chromium >/dev/null
fi
if [ ! -x "$chromium" ]; then
  echo "browser-setup: chromium installed but $chromium is missing" >&2
  exit 1
fi
echo "browser-setup: Chromium installed: $chromium ($(version "$chromium"))"
