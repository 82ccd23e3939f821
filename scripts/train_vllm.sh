#!/usr/bin/env bash
# GRPO with TRL's vLLM rollouts on GPU machines (needs the `vllm` extra, which pins its own torch:
# install it in a GPU environment, not beside the CPU stack):
#   scripts/train_vllm.sh colocate [CONFIG.yaml] [key=value ...]   vLLM shares each training GPU
#   scripts/train_vllm.sh server   [CONFIG.yaml] [key=value ...]   GPU 0 serves, the others train
# The policy folder vLLM loads is `rec-rl policy-path` (the GGUF default is converted once).
# Completions still stop at a line break: rec-rl passes the newline ids as vLLM stop_token_ids.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: scripts/train_vllm.sh colocate|server [CONFIG.yaml] [key=value ...]}
shift
configs=$(python -c "import pathlib, trl; print(pathlib.Path(trl.__file__).parent / 'accelerate_configs')")
gpus=${NUM_GPUS:-$(nvidia-smi -L | wc -l)}
export TOKENIZERS_PARALLELISM=false
vllm="train.grpo.use_vllm=true train.grpo.vllm_mode=$mode train.grpo.bf16=true"
case "$mode" in
  colocate)
    exec accelerate launch --config_file "$configs/multi_gpu.yaml" --num_processes "$gpus" \
      -m rec_rl.cli train "$@" $vllm ;;
  server)
    (( gpus >= 2 )) || { echo "server mode needs 2+ GPUs (one serves); use colocate" >&2; exit 2; }
    model=$(rec-rl policy-path "$@")
    port=${VLLM_PORT:-8000}
    CUDA_VISIBLE_DEVICES=0 trl vllm-serve --model "$model" --port "$port" &
    server=$!
    trap 'kill $server 2>/dev/null' EXIT
    until curl -sf "http://localhost:$port/health" >/dev/null; do
      kill -0 $server 2>/dev/null || { echo "trl vllm-serve exited" >&2; exit 1; }
      sleep 5
    done
    CUDA_VISIBLE_DEVICES=$(seq -s, 1 $((gpus - 1))) accelerate launch --config_file "$configs/multi_gpu.yaml" \
      --num_processes $((gpus - 1)) -m rec_rl.cli train "$@" $vllm train.grpo.vllm_server_port="$port" ;;
  *) echo "unknown mode $mode: colocate or server" >&2; exit 2 ;;
esac
