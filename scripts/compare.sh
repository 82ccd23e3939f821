#!/usr/bin/env bash
# The route comparison: `scripts/compare.sh [CONFIG.yaml] [--budget cpu|gpu|none] [key=value ...]`.
# Pins the math libraries to the machine's cores; oversubscribed OpenMP threads spin and slow a CPU run.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
export TOKENIZERS_PARALLELISM=false
exec rec-rl compare "$@"
