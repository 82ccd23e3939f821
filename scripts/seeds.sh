#!/usr/bin/env bash
# One configuration over several seeds: `scripts/seeds.sh [CONFIG.yaml] [--seeds 0 1 2] [--output DIR] [key=value ...]`.
# Pins the math libraries to the machine's cores; oversubscribed OpenMP threads spin and slow a CPU run.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
export TOKENIZERS_PARALLELISM=false
exec rec-rl seeds "$@"
