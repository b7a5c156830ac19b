#!/usr/bin/env bash
# Training on a Slurm cluster with srun (one task per GPU):
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py args...]
# GPUS (tasks, one per GPU; default 1), GPUS_PER_NODE (default min(GPUS, 8)), CPUS_PER_TASK
# (default 5), GRES (default gpu:GPUS_PER_NODE; set GRES= for a CPU-only cluster, where the
# tasks train with gloo) and SRUN_ARGS (extra srun options) come from the environment.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG [--work-dir DIR] [...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
GPUS=${GPUS:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
DIR=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}
GRES=${GRES-gpu:${GPUS_PER_NODE}}
GRES_ARG=""
if [ -n "$GRES" ]; then GRES_ARG="--gres=$GRES"; fi
# shellcheck disable=SC2086
exec srun -p "$PARTITION" --job-name="$JOB_NAME" $GRES_ARG \
    --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 $SRUN_ARGS \
    "$PYTHON" -u "$DIR/train.py" "$CONFIG" --launcher slurm "$@"
