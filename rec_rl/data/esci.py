"""Product search in the Amazon ESCI format (Reddy et al., 2022: "Shopping Queries Dataset").

One examples file (JSONL, JSONL.gz or Parquet), one judged (query, product) pair per line:
    query_id, query, product_id, esci_label (E/S/C/I), split (train/test, optional),
    product_locale (optional), product_title, product_description, ... (product columns)
The product columns may instead come from a separate products file keyed by product_id, as in the
official release (`shopping_queries_dataset_products.parquet`).

Every judged product enters the catalog. A query's targets are its products with a positive gain
(E=1.0, S=0.1, C=0.01; I=0 is left out), so queries judged only Irrelevant have no row.
Queries whose `split` is "train" are divided into train and valid by a hash of the query id.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from rec_rl.data.catalog import Catalog
from rec_rl.data.records import DataError, read_records, require, resolve_file, where
from rec_rl.data.tasks import SPLITS, TaskData, make_split

ESCI_GAINS = {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}
LABEL_NAMES = {"exact": "E", "substitute": "S", "complement": "C", "irrelevant": "I"}


def _in_valid(query_id: str, valid_fraction: float) -> bool:
    """Stable across runs and machines, unlike Python's salted `hash`."""
    bucket = int(hashlib.sha1(query_id.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < valid_fraction


def load_esci(folder: Path, examples_file: str, products_file: str | None, text_keys: tuple[str, ...],
              locale: str | None, valid_fraction: float) -> TaskData:
    """Load an ESCI-format product search task from `folder`."""
    examples_path = resolve_file(folder, examples_file)
    products: dict[str, dict] = {}
    if products_file:
        products_path = resolve_file(folder, products_file)
        for number, record in read_records(products_path):
            product_id = str(require(record, "product_id", products_path, number))
            if product_id in products:
                raise DataError(f"{where(products_path, number)}: duplicate product_id {product_id!r}")
            require(record, "product_title", products_path, number)
            products[product_id] = record

    queries: dict[str, dict] = {}  # query_id -> {"query", "split", "judged": {product_id: gain}}
    for number, record in read_records(examples_path):
        if locale and record.get("product_locale", locale) != locale:
            continue
        query_id = str(require(record, "query_id", examples_path, number))
        product_id = str(require(record, "product_id", examples_path, number))
        label = str(require(record, "esci_label", examples_path, number)).strip()
        label = LABEL_NAMES.get(label.lower(), label)
        if label not in ESCI_GAINS:
            raise DataError(f"{where(examples_path, number)}: esci_label {label!r} is not one of E, S, C, I")
        if product_id not in products:
            if products_file:
                raise DataError(f"{where(examples_path, number)}: product_id {product_id!r} is not in {products_file}")
            require(record, "product_title", examples_path, number)
            products[product_id] = record
        split = str(record.get("split") or "train")
        if split not in ("train", "test"):
            raise DataError(f"{where(examples_path, number)}: split {split!r} is not 'train' or 'test'")
        entry = queries.setdefault(query_id, {"query": str(require(record, "query", examples_path, number)),
                                              "split": split, "judged": {}})
        if product_id in entry["judged"]:
            raise DataError(f"{where(examples_path, number)}: query {query_id!r} judges product {product_id!r} twice")
        entry["judged"][product_id] = ESCI_GAINS[label]
    if not queries:
        raise DataError(f"{examples_path}: no examples" + (f" with product_locale {locale!r}" if locale else ""))

    catalog = Catalog.from_items(
        (product_id, str(record["product_title"]).strip(),
         " ".join([str(record["product_title"]).strip()]
                  + [str(record[key]).strip() for key in text_keys if record.get(key)]))
        for product_id, record in products.items())

    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for query_id, entry in queries.items():
        targets = [(product_id, gain) for product_id, gain in entry["judged"].items() if gain > 0]
        if not targets:
            continue
        split = entry["split"]
        if split == "train" and _in_valid(query_id, valid_fraction):
            split = "valid"
        rows[split].append({
            "row_id": query_id,
            "query": entry["query"],
            "history_item_ids": [],
            "history_titles": [],
            "target_item_ids": [product_id for product_id, _ in targets],
            "gains": [gain for _, gain in targets],
            "exclude_item_ids": [],
        })
    return TaskData(kind="esci", catalog=catalog, splits={split: make_split(r) for split, r in rows.items()})
