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

from rec_rl.data.catalog import Catalog

SPLITS = ("train", "valid", "test")


@dataclass
class TaskData:
    """A catalog plus train/valid/test prompt datasets."""

    kind: str  # "sequential" or "esci"
    catalog: Catalog
    splits: dict[str, datasets.Dataset]
    # Per split, the interaction sequences known before that split's targets: what popularity and
    # item-to-item transition baselines may count without seeing the answer. Empty for search tasks.
    known_sequences: dict[str, list[list[str]]] = field(default_factory=dict)

    def split(self, name: str, max_rows: int | None = None, seed: int = 0) -> datasets.Dataset:
        """Split `name`, or a seeded random sample of `max_rows` of its rows."""
        if name not in self.splits:
            raise KeyError(f"unknown split {name!r}; expected one of {sorted(self.splits)}")
        rows = self.splits[name]
        if max_rows is not None and max_rows < len(rows):
            rows = rows.shuffle(seed=seed).select(range(max_rows))
        return rows


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
