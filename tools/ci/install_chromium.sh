#!/usr/bin/env bash
# Install Debian's headless-capable Chromium (and a font) for the leaderboard page test.
# Idempotent; run as root on Debian 12:
#
#     bash tools/ci/install_chromium.sh
#
# The test runs /usr/bin/chromium (or $MIXBENCH_CHROMIUM) with --headless; nothing is
# downloaded at test time.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "install_chromium.sh: run me as root (apt-get needs it)" >&2
    exit 1
fi

if ! [ -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi dejavu; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fontconfig >/dev/null
fi
/usr/bin/chromium --version
