#!/bin/sh
# The Debian packages `make install` and the README walk-through need, installed with
# apt only when missing: python3 with venv and ensurepip, SoftHSM2, curl and jq; Debian's
# Chromium and fonts (the web UI tests drive it with Playwright, which downloads no browser);
# Node.js and npm (axe-core for the accessibility test, from the npm registry).
# Silent and without apt when everything is present. Needs root or sudo to install.
set -eu
missing=""
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$missing python3-venv"
command -v softhsm2-util >/dev/null 2>&1 || missing="$missing softhsm2"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v jq >/dev/null 2>&1 || missing="$missing jq"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium fonts-liberation"
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
[ -n "$missing" ] || exit 0
if [ "$(id -u)" = 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "system-deps: missing Debian packages:$missing; install them as root (apt-get install$missing)" >&2
  exit 1
fi
echo "system-deps: installing with apt:$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086  # one word per package
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
