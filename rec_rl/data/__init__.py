"""Datasets: the item catalog and the task splits that prompts, rewards and evaluation read.

`load_task(config.data)` is the one entry point; the kind and the files come from config alone.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rec_rl.data.catalog import Catalog, read_catalog
from rec_rl.data.esci import ESCI_GAINS, load_esci
from rec_rl.data.records import DataError
from rec_rl.data.search import load_search
from rec_rl.data.sequential import load_sequential
from rec_rl.data.tasks import SPLITS, TaskData, overlapping_rows

EMBEDDED_DATASET = Path(str(resources.files("rec_rl.data") / "embedded" / "amazon_games_seq"))

__all__ = ["Catalog", "DataError", "ESCI_GAINS", "EMBEDDED_DATASET", "SPLITS", "TaskData", "load_task",
           "overlapping_rows", "read_catalog"]


def load_task(data) -> TaskData:
    """Load the task that a `DataConfig` describes (`data.path` null: the embedded Amazon Games data)."""
    folder = Path(data.path).expanduser() if data.path else EMBEDDED_DATASET
    if not folder.is_dir():
        raise DataError(f"data.path {str(folder)!r} is not a folder")
    if data.kind == "sequential":
        return load_sequential(folder, data.items_file, data.sequences_file, data.history_len, data.drop_history,
                               data.user_split, data.valid_users, data.split_seed)
    if data.kind == "search":
        return load_search(folder, data.items_file, data.queries_file, data.judgments_file, data.gain,
                           data.relevant_min_grade)
    return load_esci(folder, data.examples_file, data.products_file, tuple(data.text_keys), data.locale,
                     data.valid_fraction)
