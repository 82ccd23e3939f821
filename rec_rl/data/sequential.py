"""Sequential recommendation with a leave-one-out split (the embedded Amazon Games data's format).

`items` file: `{"item_id": 0, "title": "..."}` per line.
`sequences` file: `{"user_id": "u1", "item_ids": [...]}` per line, oldest first (other keys ignored).

Per user, with `s = item_ids`: test predicts `s[-1]` from `s[:-1]`, valid predicts `s[-2]` from `s[:-2]`,
train predicts `s[-3]` from `s[:-3]`. Users need at least 4 interactions.

Users, not only targets, are split (`user_split="disjoint"`, the default): a seeded hash of the user id
picks `valid_users` validation users; the valid split holds only them and the test split only the
others, so nothing chosen on validation (a checkpoint, a config, a stopping step) was chosen on a test
user. Every user's train row stays (its target `s[-3]` precedes both held-out targets). The partition
depends on the user ids and `split_seed` alone: not on file order, the machine or the training seed.
`user_split="shared"` keeps the classic leave-one-out layout (every user in every split), which
`rec-rl train` refuses because its validation users would be its test users.
"""

from __future__ import annotations

from pathlib import Path

import hashlib

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


DEFAULT_VALID_USERS = 1000  # at most; a tenth of a smaller data set's users


def validation_users(user_ids: list[str], count: int | None, seed: int) -> set[str]:
    """The `count` users with the smallest seeded sha256 of their id: the same set on any machine, in any order.

    `count` None: a tenth of the users, at most `DEFAULT_VALID_USERS` and at least 1.

    Example:
        >>> sorted(validation_users(["u1", "u2", "u3", "u4"], 2, seed=0)) == sorted(validation_users(["u4", "u3", "u2", "u1"], 2, seed=0))
        True
    """
    if count is None:
        count = max(1, min(DEFAULT_VALID_USERS, len(user_ids) // 10))
    if count >= len(user_ids):
        raise DataError(f"data.valid_users={count} leaves no test users: the data has {len(user_ids)} users")
    ranked = sorted(user_ids, key=lambda user: hashlib.sha256(f"{seed}:{user}".encode("utf-8")).digest())
    return set(ranked[:count])


def load_sequential(folder: Path, items_file: str, sequences_file: str, history_len: int,
                    drop_history: bool, user_split: str = "disjoint", valid_users: int | None = None,
                    split_seed: int = 0) -> TaskData:
    """Load a leave-one-out sequential recommendation task from `folder` (users split as the module says)."""
    catalog = read_catalog(resolve_file(folder, items_file))
    sequences = read_sequences(resolve_file(folder, sequences_file), catalog)
    if user_split not in ("disjoint", "shared"):
        raise DataError(f"data.user_split is {user_split!r}; expected 'disjoint' or 'shared'")
    valid = validation_users([user for user, _ in sequences], valid_users, split_seed) \
        if user_split == "disjoint" else None
    members = {"train": lambda user: True,
               "valid": lambda user: valid is None or user in valid,
               "test": lambda user: valid is None or user not in valid}
    splits, known = {}, {}
    for split in SPLITS:
        offset = TARGET_OFFSET[split]
        rows = []
        for user_id, item_ids in sequences:
            if not members[split](user_id):
                continue
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
