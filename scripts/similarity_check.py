"""How much `reward.similarity_weight`'s cosine tells a user's own next item from another user's.

Scores fixed queries of the first N training users against their own next item and against the next
item of the following user (a derangement), with the reward function training uses. Writes JSON.

    REC_RL_CACHE=/tmp/cmp_cache python scripts/similarity_check.py --rows 400 \
        --output docs/runs/implicit_levers/similarity_check.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rec_rl.config import RunConfig
from rec_rl.data import load_task
from rec_rl.training.routes import last_titles_query
from rec_rl.training.rows import text_encoder
from rewards import TargetSimilarity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    config = RunConfig()
    task = load_task(config.data)
    rows = task.splits["train"].select(range(args.rows))
    encode, embeddings = text_encoder(config, task)
    reward = TargetSimilarity(encode, embeddings, task.catalog.row_of, "plain", config.reward.max_query_words)
    targets = list(rows["target_item_ids"])
    others = targets[1:] + targets[:1]
    titles = rows["history_titles"]
    queries = {"last 5 titles": [last_titles_query(t, 5) for t in titles],
               "last title": [last_titles_query(t, 1) for t in titles],
               "'video game'": ["video game"] * len(titles),
               "a question": ["Which game should I play next on my console?"] * len(titles)}
    results = {}
    for name, texts in queries.items():
        own, other = np.array(reward(None, texts, targets)), np.array(reward(None, texts, others))
        results[name] = {"own_next_item": round(float(own.mean()), 4), "other_users_next_item": round(float(other.mean()), 4)}
        print(f"{name:15s} own {own.mean():.3f}  other user's {other.mean():.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"rows": args.rows, "split": "train", "encoder": "all-MiniLM-L6-v2",
                                       "mean_cosine": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
