#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine (localhost), for CI and for trying
# `tools/sweep.py run --backend slurm` on a laptop.
#
#   sudo bash tools/ci/start_slurm.sh        # install (first time), configure, start, wait
#   sudo bash tools/ci/stop_slurm.sh         # stop the daemons again
#
# Idempotent: run it again and it only starts what is not running. Needs root and
# Debian 12 (or Ubuntu): installs slurm-wlm and munge with apt-get, creates a munge key,
# writes /etc/slurm/slurm.conf for one node named localhost (no GPUs, CPUs=$SLURM_CPUS,
# default 2), starts munged, slurmctld and slurmd directly (no systemd needed), and waits
# until `sinfo` shows the node idle. An existing /etc/slurm/slurm.conf that this script
# did not write is left alone unless MIXBENCH_SLURM_FORCE_CONF=1.
set -euo pipefail

CPUS="${SLURM_CPUS:-2}"
PARTITION="${SLURM_PARTITION:-debug}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARK="# written by mixbench tools/ci/start_slurm.sh"
LOG_DIR=/var/log/slurm

if [ "$(id -u)" -ne 0 ]; then
    echo "start_slurm.sh must run as root (it installs packages and starts daemons): sudo bash $0" >&2
    exit 1
fi

# 1. Packages.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v sinfo >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# 2. Munge key and runtime dirs.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

# 3. slurm.conf (single node, localhost).
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
install -d -m 0755 "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd /run/slurm
if [ ! -f "$CONF" ] || head -n1 "$CONF" | grep -qF "$MARK" || [ "${MIXBENCH_SLURM_FORCE_CONF:-0}" = 1 ]; then
    new_conf=$(cat <<CONF
$MARK
ClusterName=mixbench
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=10
Waittime=0
SchedulerParameters=sched_interval=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
)
    if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new_conf" ]; then
        printf '%s\n' "$new_conf" > "$CONF"
        conf_changed=1
    fi
else
    echo "start_slurm.sh: keeping $CONF (not written by this script; set MIXBENCH_SLURM_FORCE_CONF=1 to replace it)"
fi
# Some builds read the configuration from /etc/slurm-llnl.
[ -e /etc/slurm-llnl ] || ln -s "$CONF_DIR" /etc/slurm-llnl

running() { pgrep -x "$1" >/dev/null; }

# 4. Daemons.
if ! running munged; then
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.2; done
if ! munge -n </dev/null | unmunge >/dev/null; then
    echo "start_slurm.sh: munge does not work (see /var/log/munge/munged.log)" >&2
    exit 1
fi
if [ "${conf_changed:-0}" = 1 ] && running slurmctld; then
    scontrol reconfigure || true
fi
running slurmctld || slurmctld
running slurmd || slurmd -N localhost

# 5. Wait until the node is idle (or mixed/allocated by earlier jobs).
for i in $(seq 120); do
    state=$(sinfo -h -n localhost -o '%T' 2>/dev/null | head -n1 || true)
    case "$state" in
        idle|mixed|allocated|completing)
            echo "start_slurm.sh: Slurm is up: partition '$PARTITION', node localhost ($CPUS CPUs) is $state"
            exit 0 ;;
        down*|drain*|fail*)
            [ "$i" -gt 3 ] && scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
echo "start_slurm.sh: the node did not become idle in 120 s; sinfo says:" >&2
sinfo -N -l >&2 || true
tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
exit 1
