#!/usr/bin/env bash
# The GPU check (bench/gpu_step.py) in one command, for a machine that has torch and transformers but no
# package registry, no model hub and at most 64 MiB of files brought to it.
#
#   scripts/gpu_check.sh prepare       # on this (CPU) machine, registry reachable: writes .gpu/ (git-ignored)
#   scripts/gpu_check.sh run [OUT]     # on the GPU machine, from the repository root, .gpu/ brought along
#
# prepare writes
#   .gpu/wheels/     what the GPU image lacks, as Python 3.12 manylinux x86_64 wheels without dependencies:
#                    TRL, datasets (with dill and multiprocess), bm25s, nltk (with defusedxml); the versions
#                    installed here, so the check runs the code the tests run
#   .gpu/tokenizer/  SmolLM2's tokenizer (~3 MB, from the GGUF; the 94 MB GGUF itself stays here)
#   .gpu/cache/      the embedded catalog's MiniLM embeddings and rq codes (~27 MB): the compact policy's
#                    codes without sentence-transformers' model or faiss
# and prints their size with the tracked tree's, which together must stay under 64 MiB.
#
# run installs the wheels offline into /tmp/site, then times random-initialised SmolLM2-135M- and
# 0.5B-shaped policies (6 GRPO steps each, bf16, bm25s rewards) and one SFT epoch of the compact
# semantic-ID policy (configs/explicit.yaml: GRPO steps and beam evaluation of 2,000 test users included),
# writing OUT/gpu_step.json (bench/results/gpu_step.json's schema) and OUT/gpu_step.log. Options after OUT
# go to bench/gpu_step.py (tests/test_bench.py runs it so on CPU with a tiny policy).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"

case "$mode" in
prepare)
    rm -rf .gpu/wheels .gpu/tokenizer
    mkdir -p .gpu/wheels .gpu/cache
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    packages=$(python - <<'EOF'
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in
               ("trl", "datasets", "dill", "multiprocess", "bm25s", "nltk", "defusedxml")))
EOF
)
    # shellcheck disable=SC2086  # one argument per package
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .gpu/wheels $packages
    python - <<'EOF'
import shutil
import tempfile
from pathlib import Path

from transformers import AutoTokenizer

from rec_rl.cache import cache_root
from rec_rl.codes.build import item_codes
from rec_rl.config import load_config
from rec_rl.data import load_task
from rec_rl.policy import tiny_policy

with tempfile.TemporaryDirectory() as scratch:
    AutoTokenizer.from_pretrained(tiny_policy(Path(scratch) / "policy")).save_pretrained(".gpu/tokenizer")
config = load_config("configs/explicit.yaml")
catalog = load_task(config.data).catalog
item_codes(catalog, config.codes)  # built into (or found in) the local cache
prefix = catalog.content_hash[:16]
for entry in cache_root().iterdir():
    if entry.name.startswith((f"dense-embeddings-{prefix}", f"codes-{config.codes.method}-{prefix}")):
        shutil.copytree(entry, Path(".gpu/cache") / entry.name, dirs_exist_ok=True)
EOF
    tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
    brought=$(du -sb .gpu | cut -f1)
    echo "prepared .gpu/: $((brought / 1048576)) MiB, with the tracked tree $(((brought + tree) / 1048576)) MiB (limit 64)"
    ;;
run)
    out="${2:-${OUT:-bench/results}}"
    mkdir -p "$out"
    # The wheels only where a package is missing (the GPU image lacks them; this machine has them).
    if ! python3 -c "import trl, datasets, bm25s, nltk" 2>/dev/null && compgen -G ".gpu/wheels/*.whl" > /dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl
        export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
    fi
    export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 REC_RL_CACHE="$PWD/.gpu/cache"
    tokenizer=()
    [ -d .gpu/tokenizer ] && tokenizer=(--tokenizer .gpu/tokenizer)
    shift $(( $# > 1 ? 2 : 1 ))
    python3 bench/gpu_step.py --archs smollm2-135m llama-0.5b --steps 6 "${tokenizer[@]}" --compact-epochs 1 \
        --out "$out/gpu_step.json" "$@" 2>&1 | tee "$out/gpu_step.log"
    ;;
*)
    echo "usage: scripts/gpu_check.sh prepare | run [OUT] [bench/gpu_step.py options]" >&2
    exit 2
    ;;
esac
