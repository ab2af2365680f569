#!/usr/bin/env bash
# Train one model over N processes with torchrun: N GPUs of this machine (or N CPU processes).
#
#   tools/dist_train.sh CFG N [overrides and cvkit train options...]
#
# Several machines: run it on each with the same NNODES, MASTER_ADDR and PORT and the
# machine's own NODE_RANK (0 on the machine at MASTER_ADDR):
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 tools/dist_train.sh CFG 8   # on 10.0.0.1
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 tools/dist_train.sh CFG 8   # on the other
#
# PYTHON picks the interpreter (default: python3). Everything after N goes to `cvkit train`.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: tools/dist_train.sh CFG N [overrides...]   (N: processes on this machine)" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
PYTHON=${PYTHON:-python3}
NNODES=${NNODES:-1}

if [ "$NNODES" = 1 ]; then
    exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" \
        -m cvkit train "$CONFIG" "$@"
fi
exec "$PYTHON" -m torch.distributed.run --nnodes "$NNODES" --node_rank "${NODE_RANK:?set NODE_RANK}" \
    --rdzv_endpoint "${MASTER_ADDR:?set MASTER_ADDR}:${PORT:-29500}" --nproc_per_node "$NPROC" \
    -m cvkit train "$CONFIG" "$@"
