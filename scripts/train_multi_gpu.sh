#!/usr/bin/env bash
# Multi-GPU training with accelerate (needs the `deepspeed` extra for the zero* strategies):
#   scripts/train_multi_gpu.sh [zero1|zero2|zero3|multi_gpu|fsdp2] [CONFIG.yaml] [key=value ...]
# The strategy files are TRL's own accelerate configs (trl/accelerate_configs/), run with NUM_GPUS
# processes (default: every visible GPU) in bf16. Every process runs the same evaluations; the first
# writes the run folder (rec_rl/training/run.py: is_main_process).
set -euo pipefail
cd "$(dirname "$0")/.."
strategy=zero2
case "${1:-}" in zero1|zero2|zero3|multi_gpu|fsdp1|fsdp2) strategy=$1; shift ;; esac
configs=$(python -c "import pathlib, trl; print(pathlib.Path(trl.__file__).parent / 'accelerate_configs')")
gpus=${NUM_GPUS:-$(nvidia-smi -L | wc -l)}
export TOKENIZERS_PARALLELISM=false
exec accelerate launch --config_file "$configs/$strategy.yaml" --num_processes "$gpus" \
  -m rec_rl.cli train "$@" train.grpo.bf16=true train.rloo.bf16=true
