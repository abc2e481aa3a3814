#!/usr/bin/env bash
# A tiny model split across cuda:0 and the CPU (then with a layer on disk), and a bf16 load on
# cuda:0: every capture, statistic, weight and the induction finder against an unsharded float32
# load. Run on a CUDA machine with torch + transformers + accelerate:
#   bash analyses/benchmarks/gpu_sharded.sh            (cuda:0 + cpu)
#   bash analyses/benchmarks/gpu_sharded.sh --devices cuda:0 cuda:1
# Takes well under a minute; the timeout ends it at 120 s. Exit status 1 if any check fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"
unset TRITON_INTERPRET  # the interpreter would run the kernel on the CPU
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 120 "$PY" -u analyses/benchmarks/gpu_sharded.py "$@"
