#!/usr/bin/env bash
# Baseline evaluation launcher: `scripts/eval.sh [CONFIG.yaml] [key=value ...]`, e.g. retriever.backend=dense.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
export TOKENIZERS_PARALLELISM=false
exec rec-rl eval "$@"
