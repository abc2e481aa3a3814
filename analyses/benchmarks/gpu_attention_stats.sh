#!/usr/bin/env bash
# GPU check of the Triton attention_stats kernel (correctness, then speed vs SDPA flash forward).
# Run from anywhere on a CUDA machine with torch + triton: bash analyses/benchmarks/gpu_attention_stats.sh
# Extra arguments go to the python script (e.g. --lengths 4096 16384, --no-sweep, --budget-s 200).
# Takes ~2-3 min: the script starts no measurement after 240 s (--budget-s) and prints every row
# as it is measured; the timeout kills it at 290 s so that it always ends within 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"
unset TRITON_INTERPRET  # the interpreter would run the kernel on the CPU
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 290 "$PY" -u analyses/benchmarks/gpu_attention_stats.py "$@"
