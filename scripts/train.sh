#!/usr/bin/env bash
# Single-process training launcher (CPU, or one GPU): `scripts/train.sh [CONFIG.yaml] [key=value ...]`.
# Pins the math libraries to the machine's cores; oversubscribed OpenMP threads spin and slow a CPU run.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
export TOKENIZERS_PARALLELISM=false
exec rec-rl train "$@"
