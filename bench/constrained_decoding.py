"""Invalid-code rate and ranking quality of an explicit-route run's policies, with and without the code trie.

    python bench/constrained_decoding.py RUN_DIR [--rows 320] [--out bench/results/constrained_decoding.json]

RUN_DIR is the folder of a finished `rec-rl train configs/explicit.yaml` run: its `config.yaml`, the SFT
policy in `sft/` and the GRPO adapter in `final/`. Both policies are evaluated on the same seeded test
users with greedy decoding, once under the prefix trie (`codes.constrained`) and once free. Prints a
markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from rec_rl.config import load_config
from rec_rl.data import load_task
from rec_rl.evaluation.policy import evaluate_policy
from rec_rl.policy import load_policy, stop_at_line_end
from rec_rl.training.explicit import code_trie
from rec_rl.training.routes import route_of
from rec_rl.training.rows import prompt_rows
from rec_rl.training.trl_args import trainer_args
from retrievers import build_retriever

from report import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--rows", type=int, default=320)
    parser.add_argument("--out", default="bench/results/constrained_decoding.json")
    options = parser.parse_args()

    config = load_config(options.run_dir / "config.yaml")
    task = load_task(config.data)
    retriever = build_retriever(config.retriever, task.catalog, config.codes)
    model, tokenizer = load_policy(config.policy)
    stop_at_line_end(model, tokenizer, trainer_args(config, options.run_dir))
    route = route_of(config)
    # As `rec-rl train --resume` does: the run's SFT policy from run_dir/sft, its stop ids kept.
    prepared = route.prepare(config, task, retriever, model, tokenizer, options.run_dir, resume=True)
    model, tokenizer = prepared.model, prepared.tokenizer
    eos = model.generation_config.eos_token_id
    trie = prepared.constraint or code_trie(tokenizer, route.codes(retriever), eos)
    rows = route.rows(task.split("test", options.rows, config.data.split_seed), task, retriever, config)
    prompts = prompt_rows(rows, config, tokenizer)["prompt"]

    from peft import PeftModel

    policies = {"SFT": model}
    if (options.run_dir / "final").exists():
        trained, _ = load_policy(dataclasses.replace(config.policy, model=str(options.run_dir / "sft")))
        trained.generation_config.eos_token_id = eos
        policies["SFT + GRPO"] = PeftModel.from_pretrained(trained, str(options.run_dir / "final"))
    results = []
    for name, policy in policies.items():
        for constrained in (True, False):
            started = time.perf_counter()
            result, _ = evaluate_policy(name, policy, tokenizer, rows, prompts, retriever, task.catalog, "plain",
                                        config.eval.ks, config.train.grpo.get("max_completion_length", 8), 32,
                                        constraint=trie if constrained else None)
            results.append({"policy": name, "constrained": constrained, "invalid_rate": result.info["invalid_rate"],
                            **{k: float(v.mean()) for k, v in result.per_row.items()},
                            "seconds": time.perf_counter() - started})
    lines = ["| policy | trie | invalid rate | " + " | ".join(f"{m} x100" for m in results[0] if "@" in m) + " |",
             "|---|---|---|" + "---|" * sum("@" in m for m in results[0])]
    for r in results:
        lines.append(f"| {r['policy']} | {'on' if r['constrained'] else 'off'} | {r['invalid_rate']:.3f} | "
                     + " | ".join(f"{100 * v:.2f}" for m, v in r.items() if "@" in m) + " |")
    print("\n".join(lines))
    write_json(options.out, {"run_dir": str(options.run_dir), "rows": len(rows), "results": results})


if __name__ == "__main__":
    main()
