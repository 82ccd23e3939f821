"""Constrained beam search speed: rec-rl's shared-prefix tree-attention beams against transformers' own.

    python bench/beam_search.py [--users 256] [--width 50] [--hf-users 32] [--out bench/results/beam_search.json]

The policy is the compact codes-lm of configs/explicit.yaml at its default shape, random-initialised
(speed does not depend on what it learned), over the embedded catalog's rq codes; prompts are real test
users' last 20 items as codes. `rec_rl.codes.beam.beam_search_codes` is timed at several batch sizes and
extrapolated to the whole test split; transformers' `generate(num_beams=width, num_return_sequences=width,
prefix_allowed_tokens_fn=...)`, which prefills every beam's copy of the prompt, is timed on fewer users
(`--hf-users`) and checked to return the same top codes. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from rec_rl.codes.beam import beam_search_codes, level_tables
from rec_rl.codes.lm import build_codes_lm
from rec_rl.codes.trie import prefix_allowed_tokens_fn
from rec_rl.config import load_config
from rec_rl.data import load_task
from rec_rl.policy import load_policy
from rec_rl.training.explicit import code_trie
from rec_rl.training.routes import route_of
from rec_rl.training.rows import prompt_rows
from retrievers import build_retriever

from report import markdown_table, write_json

CONFIG = Path(__file__).parents[1] / "configs" / "explicit.yaml"


def transformers_beams(model, tokenizer, prompts, trie, depth: int, width: int) -> tuple[list, float]:
    """transformers' constrained beam search, one prompt at a time (its beams are the batch)."""
    started, ranked = time.perf_counter(), []
    for prompt in prompts:
        inputs = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
        width_in = inputs["input_ids"].shape[1]
        output = model.generate(**inputs, num_beams=width, num_return_sequences=width, max_new_tokens=depth,
                                min_new_tokens=depth, do_sample=False, early_stopping=True, length_penalty=0.0,
                                prefix_allowed_tokens_fn=prefix_allowed_tokens_fn(trie, width_in),
                                pad_token_id=tokenizer.pad_token_id)
        ranked.append([tuple(ids[width_in:width_in + depth].tolist()) for ids in output])
    return ranked, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--hf-users", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--out", default="bench/results/beam_search.json")
    options = parser.parse_args()

    config = load_config(CONFIG)
    task = load_task(config.data)
    retriever = build_retriever(config.retriever, task.catalog, config.codes)
    route = route_of(config)
    with tempfile.TemporaryDirectory() as scratch:
        model, tokenizer = load_policy(type(config.policy)(model=str(build_codes_lm(
            scratch, retriever.codes.codebook_sizes, config.policy.architecture, seed=0)), lora=False))
    test_users = len(task.split("test"))
    rows = route.rows(task.split("test", options.users, config.data.split_seed), task, retriever, config)
    prompts = list(prompt_rows(rows, config, tokenizer)["prompt"])
    depth = retriever.codes.codes.shape[1]
    trie = code_trie(tokenizer, retriever.codes.codes, model.generation_config.eos_token_id)
    started = time.perf_counter()
    tables = level_tables(trie, depth)
    table_seconds = time.perf_counter() - started
    results, ours = [], None
    for batch_size in options.batch_sizes:
        started = time.perf_counter()
        ranked = beam_search_codes(model, tokenizer, prompts, trie, depth, options.width, batch_size, tables=tables)
        seconds = time.perf_counter() - started
        ours = ours or ranked
        results.append({"method": "rec-rl tree attention", "batch_size": batch_size, "users": len(prompts),
                        "seconds": seconds, "users_per_s": len(prompts) / seconds,
                        "test_split_minutes": test_users / (len(prompts) / seconds) / 60})
    hf_prompts = prompts[:options.hf_users]
    hf_ranked, hf_seconds = transformers_beams(model, tokenizer, hf_prompts, trie, depth, options.width)
    agree = sum(a[0][0] == b[0] for a, b in zip(ours, hf_ranked)) / len(hf_prompts)
    results.append({"method": "transformers generate(num_beams)", "batch_size": 1, "users": len(hf_prompts),
                    "seconds": hf_seconds, "users_per_s": len(hf_prompts) / hf_seconds,
                    "test_split_minutes": test_users / (len(hf_prompts) / hf_seconds) / 60})
    columns = ["method", "batch_size", "users", "seconds", "users_per_s", "test_split_minutes"]
    print(markdown_table(results, columns))
    print(f"\nbest code agrees with transformers' beam search for {agree:.0%} of {len(hf_prompts)} users; "
          f"trie tables built in {table_seconds:.2f} s; {test_users} test users")
    write_json(options.out, {"command": "python bench/beam_search.py", "width": options.width, "depth": depth,
                             "parameters": sum(p.numel() for p in model.parameters()), "test_users": test_users,
                             "table_seconds": table_seconds, "top_code_agreement_with_transformers": agree,
                             "threads": torch.get_num_threads(), "results": results})


if __name__ == "__main__":
    main()
