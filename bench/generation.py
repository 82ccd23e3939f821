"""What the implicit route's greedy evaluation costs, and what changes it: batch size and completion cap.

    python bench/generation.py [--rows 128] [--out bench/results/generation.json] [key=value ...]

Greedy queries of the default policy (SmolLM2-135M-Instruct, `history_query_recent`, stop at the line end)
for `--rows` validation users, through the evaluation's own `rec_rl.evaluation.policy.generate` (prompts
sorted by length, so a batch holds prompts of similar length, and stopped when every row has ended):

- `train.eval_batch_size` 16, 32 (the default) and 64 at the default cap of 24 tokens, and whether the
  queries stay the same (padding differs with the batch, so float rounding can change a greedy token);
- caps of 48 and 64 tokens at batch 32: what a completion budget that holds the trivial query costs
  (the last 5 titles are 41 SmolLM2 tokens on average);
- batch 32 without the shared prompt prefix (`rec_rl.evaluation.policy.SharedPrefix`: the system turn and
  instructions every prompt starts with, computed once and its cache copied to each batch): what it saves,
  and whether the queries stay the same.

Each setup generates once after one untimed warm-up batch. Prints a table, writes JSON and the table as .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from rec_rl.config import load_config
from rec_rl.data import load_task
from rec_rl.evaluation.policy import SharedPrefix, generate
from rec_rl.policy import load_policy, stop_at_line_end
from rec_rl.prompts import get_template, render_prompt
from report import machine, markdown_table, write_json

SETUPS = [("batch 16", 16, 24, True), ("batch 32 (default)", 32, 24, True), ("batch 64", 64, 24, True),
          ("batch 32, cap 48", 32, 48, True), ("batch 32, cap 64", 32, 64, True),
          ("batch 32, no shared prefix", 32, 24, False)]  # (name, batch, cap, shared prefix)
REFERENCE = "batch 32 (default)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--out", default="bench/results/generation.json")
    parser.add_argument("overrides", nargs="*", help="key=value for the config (policy, template, data)")
    options = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))

    config = load_config(None, options.overrides)
    task = load_task(config.data)
    model, tokenizer = load_policy(config.policy)

    stop_at_line_end(model, tokenizer, SimpleNamespace(use_vllm=False))  # as `rec-rl train` evaluates
    template = get_template(config.train.template)
    rows = task.split("valid", options.rows, config.data.split_seed)
    prompts = [render_prompt(row, template, tokenizer, config.train.max_title_chars) for row in rows]
    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    prompt_tokens, shared_tokens = sum(len(ids) for ids in encoded), len(SharedPrefix.of(model, encoded).ids)
    generate(model, tokenizer, prompts[:8], 24, 8)  # warm-up: allocator and thread pools

    outputs, results = {}, []
    for name, batch, cap, shared in SETUPS:
        print(f"{name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        texts, tokens = generate(model, tokenizer, prompts, cap, batch, share_prefix=shared)
        seconds = time.perf_counter() - started
        outputs[name] = texts
        results.append({"setup": name, "batch": batch, "cap": cap, "shared prefix": shared, "rows": len(prompts),
                        "seconds": seconds,
                        "s/user": seconds / len(prompts), "tokens generated": tokens,
                        "ms/token": 1000 * seconds / max(tokens, 1)})
    reference = next(result for result in results if result["setup"] == REFERENCE)
    for result in results:
        texts = outputs[result["setup"]]
        result["same queries as batch 32"] = sum(a == b for a, b in zip(texts, outputs[REFERENCE])) / len(texts)
        result["speed vs batch 32"] = reference["seconds"] / result["seconds"]
    columns = ["setup", "rows", "seconds", "s/user", "tokens generated", "ms/token", "speed vs batch 32",
               "same queries as batch 32"]
    text = (f"## Greedy evaluation cost, {len(prompts)} validation users ({prompt_tokens / len(prompts):.0f} prompt "
            f"tokens each on average, the first {shared_tokens} shared by all); {machine()}, "
            f"{torch.get_num_threads()} threads\n\n"
            f"`python bench/generation.py --rows {options.rows} {' '.join(options.overrides)}`\n\n"
            f"{markdown_table(results, columns)}\n")
    print("\n" + text)
    write_json(options.out, {"rows": len(prompts), "mean_prompt_tokens": prompt_tokens / len(prompts),
                             "shared_prefix_tokens": shared_tokens,
                             "threads": torch.get_num_threads(), "overrides": options.overrides, "results": results})
    Path(options.out).with_suffix(".md").write_text(text)
    print(f"written to {options.out} and its .md")


if __name__ == "__main__":
    main()
