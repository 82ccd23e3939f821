"""What spreading the compact policy's recommendations over more items costs: beams re-ranked by popularity.

The issue's bar asks the explicit route's first recommendations over 1,000 users to name >= 500 different
items. Constrained beam search ranks codes by log p(code), which favours items many users bought. This
re-ranks each user's top `--width` beams by

    log p(code) - alpha * log(1 + interactions of the item)

(logit adjustment against popularity, Menon et al. 2021), history items dropped as in every evaluation,
and reports per alpha NDCG/Recall and how many different items are ranked first and in the top 10. Beside
them: the same policy's plain beam list at the run's own `eval.beam_width`, and popularity and transitions
on the same users. Read on validation users only: nothing here is chosen on test users.

    REC_RL_CACHE=/tmp/cmp_cache python scripts/beam_popularity_tradeoff.py --policy runs/explicit/sft \
        --output docs/runs/explicit/popularity_tradeoff
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from rec_rl.codes.beam import beam_search_codes
from rec_rl.config import load_config
from rec_rl.data import load_task
from rec_rl.evaluation.baselines import popularity_counts
from rec_rl.evaluation.run import coverage, score_baselines, score_rankings
from rec_rl.training.explicit import code_token_ids, code_trie
from rec_rl.training.routes import route_of
from rec_rl.training.rows import prompt_rows
from retrievers import build_retriever
from retrievers.base import SearchResult

EXPLICIT = Path(__file__).parents[1] / "configs" / "explicit.yaml"


def adjusted_rankings(beams: list, exclude: list, counts: np.ndarray, row_of_code: dict, alpha: float, k: int,
                      catalog) -> np.ndarray:
    """Each row's top `k` catalog rows by beam score - alpha * log(1 + count), its history dropped (-1 pads)."""
    found = np.full((len(beams), k), -1, np.int64)
    for i, (ranked, dropped_ids) in enumerate(zip(beams, exclude)):
        dropped = set(catalog.rows(dropped_ids))
        kept = [(row_of_code[code], score - alpha * np.log1p(counts[row_of_code[code]])) for code, score in ranked]
        kept = sorted(((row, score) for row, score in kept if row not in dropped), key=lambda pair: -pair[1])[:k]
        found[i, :len(kept)] = [row for row, _ in kept]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="a saved compact policy (a run's sft/ or final/ folder)")
    parser.add_argument("--config", default=str(EXPLICIT))
    parser.add_argument("--rows", type=int, default=1000, help="validation users (the run's train.valid_rows sample)")
    parser.add_argument("--width", type=int, default=100, help="beams searched per user, then re-ranked")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = load_config(args.config, [f"policy.model={args.policy}"])
    task, route = load_task(config.data), route_of(config)
    retriever = build_retriever(config.retriever, task.catalog, config.codes)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(args.policy), AutoTokenizer.from_pretrained(args.policy)
    rows = route.rows(task.split("valid", args.rows, config.data.split_seed), task, retriever, config)
    prompts = list(prompt_rows(rows, config, tokenizer)["prompt"])
    ids = code_token_ids(tokenizer, retriever.codes.codes)
    trie = code_trie(tokenizer, retriever.codes.codes, model.generation_config.eos_token_id)
    row_of_code = {tuple(map(int, code)): row for row, code in enumerate(ids)}
    counts = popularity_counts(task.known_sequences["valid"], task.catalog)  # what the popularity baseline counts
    k = max(config.eval.ks)

    def measured(found: np.ndarray) -> dict:
        per_row = score_rankings(SearchResult(found, np.zeros(found.shape, np.float32)), rows, task.catalog,
                                 config.eval.ks, task.recall_min_gain)
        return {name: float(values.mean()) for name, values in per_row.items()} | coverage(found)

    systems = {}
    plain = beam_search_codes(model, tokenizer, prompts, trie, ids.shape[1], config.eval.beam_width, 128,
                              desc=f"beam {config.eval.beam_width}")
    systems[f"beam {config.eval.beam_width}"] = measured(adjusted_rankings(
        plain, rows["exclude_item_ids"], counts, row_of_code, 0.0, k, task.catalog))
    wide = beam_search_codes(model, tokenizer, prompts, trie, ids.shape[1], args.width, 128, desc=f"beam {args.width}")
    for alpha in args.alphas:
        systems[f"beam {args.width}, alpha {alpha:g}"] = measured(adjusted_rankings(
            wide, rows["exclude_item_ids"], counts, row_of_code, alpha, k, task.catalog))
    settings = dataclasses.replace(config, eval=dataclasses.replace(config.eval, split="valid",
                                                                    baselines=["popularity", "transitions"]))
    for baseline in score_baselines(settings, task, rows):
        systems[baseline.name] = ({name: float(values.mean()) for name, values in baseline.per_row.items()}
                                  | {key: baseline.info[key] for key in ("distinct_first_items", "distinct_items@10")
                                     if key in baseline.info})

    args.output.mkdir(parents=True, exist_ok=True)
    command = ("python scripts/beam_popularity_tradeoff.py --policy " + args.policy + f" --rows {args.rows} --width "
               f"{args.width} --alphas " + " ".join(f"{a:g}" for a in args.alphas) + f" --output {args.output}")
    (args.output / "results.json").write_text(json.dumps({"command": command, "rows": len(rows), "systems": systems},
                                                         indent=2))
    names = [*(f"{m}@{kk}" for m in ("ndcg", "recall") for kk in config.eval.ks)]
    lines = [f"`{command}`", "", f"{len(rows)} validation users; metrics x100.", "",
             "| ranking | " + " | ".join(names) + " | distinct first items | distinct items in top 10 |",
             "|---|" + "---|" * (len(names) + 2)]
    for name, values in systems.items():
        cells = [f"{100 * values[n]:.2f}" for n in names]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {values.get('distinct_first_items', '-')} | "
                     f"{values.get('distinct_items@10', '-')} |")
    (args.output / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
