"""Task datasets: one row per prompt, the same columns for every task kind.

Columns of every split (a `datasets.Dataset`):
    row_id            user id (sequential) or query id (search)
    query             the user's search query ("" for sequential recommendation)
    history_item_ids  the user's interactions before the target, oldest first ([] for search)
    history_titles    titles of the last `history_len` of them, oldest first
    target_item_ids   the item(s) to retrieve
    gains             graded relevance of each target (1.0 for a next item; E/S/C/I for ESCI)
    exclude_item_ids  items to drop from every ranking of this row (the user's own history)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets
import numpy as np

from rec_rl.data.catalog import Catalog

SPLITS = ("train", "valid", "test")


@dataclass
class TaskData:
    """A catalog plus train/valid/test prompt datasets."""

    kind: str  # "sequential", "esci" or "search"
    catalog: Catalog
    splits: dict[str, datasets.Dataset]
    # Per split, the interaction sequences known before that split's targets: what popularity and
    # item-to-item transition baselines may count without seeing the answer. Empty for search tasks.
    known_sequences: dict[str, list[list[str]]] = field(default_factory=dict)
    # Recall counts targets with at least this gain (and above 0): graded search data's relevant_min_grade.
    recall_min_gain: float = 0.0

    def split(self, name: str, max_rows: int | None = None, seed: int = 0) -> datasets.Dataset:
        """Split `name`, or a seeded random sample of `max_rows` of its rows."""
        if name not in self.splits:
            raise KeyError(f"unknown split {name!r}; expected one of {sorted(self.splits)}")
        rows = self.splits[name]
        if max_rows is not None and max_rows < len(rows):
            rows = rows.shuffle(seed=seed).select(range(max_rows))
        return rows

    def cold_start(self, name: str, rows: datasets.Dataset) -> np.ndarray:
        """Per row of split `name`: True when none of its targets was interacted with before the split's
        targets (the item's first interaction is in that period: item cold start). All False for search tasks."""
        known = self.known_sequences.get(name)
        if not known:
            return np.zeros(len(rows), dtype=bool)
        seen = {item for sequence in known for item in sequence}
        return np.array([all(item not in seen for item in targets) for targets in rows["target_item_ids"]], dtype=bool)

    def evaluation_rows(self, name: str, max_rows: int | None, cold_rows: int = 0, seed: int = 0) -> datasets.Dataset:
        """`split(name, max_rows, seed)`, then up to `cold_rows` more cold-start rows (`cold_start`), seeded.

        Cold-start targets are rare in a random sample (1.6% of the embedded test split), so they are
        added on top: the sample stays representative and the cold rows can be reported on their own.
        """
        rows = self.split(name, max_rows, seed)
        if not cold_rows:
            return rows
        full = self.splits[name]
        chosen, row_ids = set(rows["row_id"]), full["row_id"]
        candidates = [int(i) for i in np.flatnonzero(self.cold_start(name, full)) if row_ids[i] not in chosen]
        picked = np.random.default_rng(seed).permutation(candidates)[:cold_rows] if candidates else []
        return datasets.concatenate_datasets([rows, full.select(sorted(int(i) for i in picked))])


def overlapping_rows(a: datasets.Dataset, b: datasets.Dataset) -> list[str]:
    """Row ids (users, or queries) present in both `a` and `b`, in `a`'s order."""
    in_b = set(b["row_id"])
    return [row_id for row_id in a["row_id"] if row_id in in_b]


def make_split(rows: list[dict]) -> datasets.Dataset:
    """A `datasets.Dataset` with the task columns, typed even when `rows` is empty."""
    features = datasets.Features({
        "row_id": datasets.Value("string"),
        "query": datasets.Value("string"),
        "history_item_ids": datasets.Sequence(datasets.Value("string")),
        "history_titles": datasets.Sequence(datasets.Value("string")),
        "target_item_ids": datasets.Sequence(datasets.Value("string")),
        "gains": datasets.Sequence(datasets.Value("float32")),
        "exclude_item_ids": datasets.Sequence(datasets.Value("string")),
    })
    columns = {name: [row[name] for row in rows] for name in features}
    return datasets.Dataset.from_dict(columns, features=features)
