#!/usr/bin/env bash
# System packages and services the test suite needs, on Debian/Ubuntu, as root; idempotent.
#   Fashion-MNIST (Debian's dataset-fashion-mnist), and -- through the scripts beside this
#   one -- PostgreSQL, Chromium and a single-node Slurm on localhost.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" != 0 ]; then
    echo "setup_system.sh installs Debian packages and starts services: run it as root" \
         "(sudo $0)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
    apt-get update -qq
    apt-get install -y -qq dataset-fashion-mnist
fi
for script in install_postgres.sh install_chromium.sh start_slurm.sh; do
    if [ -f "$HERE/$script" ]; then
        echo "== $script"
        bash "$HERE/$script"
    fi
done
