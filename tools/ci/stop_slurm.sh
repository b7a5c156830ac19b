#!/usr/bin/env bash
# Stop the single-node Slurm started by tools/ci/start_slurm.sh (slurmd, slurmctld, munged).
# Idempotent: stopping what is not running is not an error. Leaves packages, configuration
# and the controller's saved state in place, so start_slurm.sh brings the same cluster back.
set -uo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "stop_slurm.sh must run as root: sudo bash $0" >&2
    exit 1
fi

stop() {  # stop <process name> [pid file]
    local name=$1 pidfile=${2:-} pid=""
    if [ -n "$pidfile" ] && [ -s "$pidfile" ]; then pid=$(cat "$pidfile"); fi
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then pid=$(pgrep -x "$name" | head -n1 || true); fi
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || { echo "stopped $name"; return 0; }; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    echo "killed $name (did not stop in 10 s)"
}

stop slurmd /run/slurm/slurmd.pid
stop slurmctld /run/slurm/slurmctld.pid
stop munged /run/munge/munged.pid
exit 0
