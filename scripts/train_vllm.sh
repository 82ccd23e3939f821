#!/usr/bin/env bash
# GRPO with TRL's vLLM rollouts on GPU machines (needs the `vllm` extra, which pins its own torch:
# install it in a GPU environment, not beside the CPU stack):
#   scripts/train_vllm.sh colocate [CONFIG.yaml] [key=value ...]   vLLM shares each training GPU
#   scripts/train_vllm.sh server   [CONFIG.yaml] [key=value ...]   GPU 0 serves, the others train
# Training goes through scripts/train_multi_gpu.sh (DDP). The policy folder vLLM loads is
# `rec-rl policy-path` (the GGUF default is converted once). Completions still stop at a line break:
# rec-rl passes the newline ids as vLLM stop_token_ids.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: scripts/train_vllm.sh colocate|server [CONFIG.yaml] [key=value ...]}
shift
gpus=${NUM_GPUS:-$(nvidia-smi -L | wc -l)}
vllm="train.grpo.use_vllm=true train.grpo.vllm_mode=$mode"
case "$mode" in
  colocate)
    NUM_GPUS=$gpus exec scripts/train_multi_gpu.sh multi_gpu "$@" $vllm ;;
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
    CUDA_VISIBLE_DEVICES=$(seq -s, 1 $((gpus - 1))) NUM_GPUS=$((gpus - 1)) \
      scripts/train_multi_gpu.sh multi_gpu "$@" $vllm train.grpo.vllm_server_port="$port" ;;
  *) echo "unknown mode $mode: colocate or server" >&2; exit 2 ;;
esac
