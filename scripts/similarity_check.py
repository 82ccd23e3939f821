"""How much `reward.similarity_weight`'s measures tell a user's own next item from another user's.

Scores fixed queries of the first N training users against their own next item and against the next
item of the following user (a derangement), with the reward function training uses, for each
`reward.similarity` measure (cosine, log_rank; the user's history dropped for the rank). Writes JSON.

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


# What a collapsed query writer loops (docs/runs/similarity_default/seed-1/results.md): the platform of the history.
PLATFORMS = ("PlayStation Vita", "PlayStation 4", "PlayStation 3", "PlayStation 2", "PlayStation", "PSP", "Xbox One",
             "Xbox 360", "Xbox", "Nintendo 3DS", "Nintendo DS", "Nintendo Switch", "Wii U", "Wii", "GameCube", "PC")


def platform_of(history_titles: list[str]) -> str:
    """The first platform named in the history, newest title first ('video game' if none is)."""
    for title in reversed(history_titles):
        for platform in PLATFORMS:
            if platform.lower() in title.lower():
                return platform
    return "video game"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    config = RunConfig()
    task = load_task(config.data)
    rows = task.splits["train"].select(range(args.rows))
    encode, embeddings = text_encoder(config, task)
    targets = list(rows["target_item_ids"])
    others = targets[1:] + targets[:1]
    history = list(rows["exclude_item_ids"])
    titles = rows["history_titles"]
    queries = {"last 5 titles": [last_titles_query(t, 5) for t in titles],
               "last title": [last_titles_query(t, 1) for t in titles],
               "'video game'": ["video game"] * len(titles),
               "a question": ["Which game should I play next on my console?"] * len(titles),
               "the user's platform, looped": [" ".join([platform_of(t)] * 4) for t in titles]}
    report = {"rows": args.rows, "split": "train", "encoder": "all-MiniLM-L6-v2"}
    for measure in TargetSimilarity.MEASURES:
        reward = TargetSimilarity(encode, embeddings, task.catalog.row_of, "plain", config.reward.max_query_words,
                                  measure)
        results = {}
        for name, texts in queries.items():
            own = np.array(reward(None, texts, targets, exclude_item_ids=history))
            other = np.array(reward(None, texts, others, exclude_item_ids=history))
            results[name] = {"own_next_item": round(float(own.mean()), 4),
                             "other_users_next_item": round(float(other.mean()), 4)}
            print(f"{measure:8s} {name:15s} own {own.mean():.3f}  other user's {other.mean():.3f}")
        report[f"mean_{measure}"] = results
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
