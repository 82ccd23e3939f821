"""Judged search data with numeric grades (TREC-style qrels, crowd ratings on a 1-3 or 0-4 scale).

Three files (JSONL, JSONL.gz or Parquet), named by `data.items_file`, `data.queries_file`, `data.judgments_file`:
    items      {"item_id", "title"}                 the catalog
    queries    {"query_id", "query", "split"?}      split: train, valid or test (default train)
    judgments  {"query_id", "item_id", "grade"}     a number; unjudged catalog items count as grade 0

`data.gain` maps grades to the gains NDCG uses: `linear` (the grade itself) or `exponential` (2^grade - 1,
as in Burges et al.'s NDCG). A query's targets are its judged items with a positive gain; Recall counts
those whose grade is at least `data.relevant_min_grade`. Queries with no positive gain have no row.
ESCI's E/S/C/I data keeps its own loader (`rec_rl.data.esci`).
"""

from __future__ import annotations

import math
from pathlib import Path

from rec_rl.data.catalog import read_catalog
from rec_rl.data.records import DataError, read_records, require, resolve_file, where
from rec_rl.data.tasks import SPLITS, TaskData, make_split

GAINS = {"linear": lambda grade: grade, "exponential": lambda grade: 2.0 ** grade - 1.0}


def load_search(folder: Path, items_file: str, queries_file: str, judgments_file: str, gain: str,
                relevant_min_grade: float) -> TaskData:
    """Load a graded-relevance search task from `folder`."""
    if gain not in GAINS:
        raise DataError(f"data.gain is {gain!r}; expected one of {sorted(GAINS)}")
    catalog = read_catalog(resolve_file(folder, items_file))
    queries_path = resolve_file(folder, queries_file)
    queries: dict[str, dict] = {}
    for number, record in read_records(queries_path):
        query_id = str(require(record, "query_id", queries_path, number))
        if query_id in queries:
            raise DataError(f"{where(queries_path, number)}: duplicate query_id {query_id!r}")
        split = str(record.get("split") or "train")
        if split not in SPLITS:
            raise DataError(f"{where(queries_path, number)}: split {split!r} is not one of {list(SPLITS)}")
        queries[query_id] = {"query": str(require(record, "query", queries_path, number)), "split": split, "judged": {}}
    judgments_path = resolve_file(folder, judgments_file)
    for number, record in read_records(judgments_path):
        query_id = str(require(record, "query_id", judgments_path, number))
        item_id = str(require(record, "item_id", judgments_path, number))
        grade = record.get("grade")
        if isinstance(grade, bool) or not isinstance(grade, (int, float)) or not math.isfinite(grade):
            raise DataError(f"{where(judgments_path, number)}: grade {grade!r} is not a finite number")
        if query_id not in queries:
            raise DataError(f"{where(judgments_path, number)}: query_id {query_id!r} is not in {queries_path.name}")
        if item_id not in catalog.row_of:
            raise DataError(f"{where(judgments_path, number)}: item_id {item_id!r} is not in the catalog")
        judged = queries[query_id]["judged"]
        if item_id in judged:
            raise DataError(f"{where(judgments_path, number)}: query {query_id!r} judges item {item_id!r} twice")
        judged[item_id] = float(grade)
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for query_id, entry in queries.items():
        targets = [(item, grade) for item, grade in entry["judged"].items() if GAINS[gain](grade) > 0]
        if not targets:
            continue
        rows[entry["split"]].append({
            "row_id": query_id, "query": entry["query"], "history_item_ids": [], "history_titles": [],
            "target_item_ids": [item for item, _ in targets], "gains": [GAINS[gain](grade) for _, grade in targets],
            "exclude_item_ids": []})
    if not any(rows.values()):
        raise DataError(f"{judgments_path}: no query has a judged item with a positive gain")
    # Recall's threshold as a gain: the mapping is increasing, so grade >= m exactly when gain >= gain(m).
    return TaskData(kind="search", catalog=catalog, splits={split: make_split(r) for split, r in rows.items()},
                    recall_min_gain=GAINS[gain](relevant_min_grade))
