"""Sequential recommendation with a leave-one-out split (the embedded Amazon Games data's format).

`items` file: `{"item_id": 0, "title": "..."}` per line.
`sequences` file: `{"user_id": "u1", "item_ids": [...]}` per line, oldest first (other keys ignored).

Per user, with `s = item_ids`: test predicts `s[-1]` from `s[:-1]`, valid predicts `s[-2]` from `s[:-2]`,
train predicts `s[-3]` from `s[:-3]`. Users need at least 4 interactions.
"""

from __future__ import annotations

from pathlib import Path

from rec_rl.data.catalog import Catalog, read_catalog
from rec_rl.data.records import DataError, read_records, require, resolve_file, where
from rec_rl.data.tasks import SPLITS, TaskData, make_split

MIN_SEQUENCE = 4  # one train target needs one history item, plus the valid and test targets

# How many items each split's target sits from the end of the sequence.
TARGET_OFFSET = {"train": 3, "valid": 2, "test": 1}


def read_sequences(path: Path, catalog: Catalog) -> list[tuple[str, list[str]]]:
    """`(user_id, item_ids)` per line; unknown items, duplicate users or short sequences fail with file:line."""
    sequences, first_line = [], {}
    for number, record in read_records(path):
        user_id = str(require(record, "user_id", path, number))
        item_ids = require(record, "item_ids", path, number)
        if not isinstance(item_ids, list):
            raise DataError(f"{where(path, number)}: 'item_ids' must be a list, got {type(item_ids).__name__}")
        item_ids = [str(item_id) for item_id in item_ids]
        if user_id in first_line:
            raise DataError(f"{where(path, number)}: duplicate user_id {user_id!r} (first at line {first_line[user_id]})")
        first_line[user_id] = number
        unknown = [item_id for item_id in item_ids if item_id not in catalog.row_of]
        if unknown:
            raise DataError(f"{where(path, number)}: user {user_id!r} has item {unknown[0]!r}, which is not in the catalog")
        if len(item_ids) < MIN_SEQUENCE:
            raise DataError(f"{where(path, number)}: user {user_id!r} has {len(item_ids)} items; "
                            f"leave-one-out needs at least {MIN_SEQUENCE}")
        sequences.append((user_id, item_ids))
    if not sequences:
        raise DataError(f"{path}: no sequences")
    return sequences


def load_sequential(folder: Path, items_file: str, sequences_file: str, history_len: int,
                    drop_history: bool) -> TaskData:
    """Load a leave-one-out sequential recommendation task from `folder`."""
    catalog = read_catalog(resolve_file(folder, items_file))
    sequences = read_sequences(resolve_file(folder, sequences_file), catalog)
    splits, known = {}, {}
    for split in SPLITS:
        offset = TARGET_OFFSET[split]
        rows = []
        for user_id, item_ids in sequences:
            history, target = item_ids[:-offset], item_ids[-offset]
            rows.append({
                "row_id": user_id,
                "query": "",
                "history_item_ids": history,
                "history_titles": [catalog.titles[catalog.row_of[i]] for i in history[-history_len:]],
                "target_item_ids": [target],
                "gains": [1.0],
                "exclude_item_ids": history if drop_history else [],
            })
        splits[split] = make_split(rows)
        known[split] = [item_ids[:-offset] for _, item_ids in sequences]
    return TaskData(kind="sequential", catalog=catalog, splits=splits, known_sequences=known)
