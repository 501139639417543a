#!/bin/sh
# Install Debian's chromium for tests/test_widget_browser.py when it is missing. Idempotent.
# As root (CI) it installs or fails loudly. Another user gets it through passwordless sudo when
# available; otherwise this says so and the browser test skips with the same advice.
set -eu
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "install_chromium.sh: chromium is missing and this user cannot install it;" \
         "the browser test will be skipped (as root: apt-get install chromium)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium.sh: no apt-get here; install chromium yourself or the browser test will be skipped" >&2
    exit 0
fi
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
command -v chromium >/dev/null 2>&1
