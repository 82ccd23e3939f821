"""The item catalog: what retrievers index and the policy never sees."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rec_rl.data.records import DataError, read_records, require, where


@dataclass(frozen=True)
class Catalog:
    """Items in a fixed row order. Retrievers return row numbers; `ids[row]` is the dataset's item id.

    Example:
        >>> catalog = Catalog.from_items([("7", "Halo 3"), ("9", "Mario Kart 8")])
        >>> catalog.row_of["9"], catalog.titles[0], len(catalog)
        (1, 'Halo 3', 2)
    """

    ids: list[str]
    titles: list[str]
    texts: list[str]  # what retrievers index: the title, plus any extra text fields
    row_of: dict[str, int] = field(repr=False)
    content_hash: str  # sha256 over ids and texts: index caches are keyed by it

    @classmethod
    def from_items(cls, items: Iterable[tuple[str, str]] | Iterable[tuple[str, str, str]]) -> Catalog:
        """Build from `(item_id, title)` or `(item_id, title, text)` tuples; ids must be unique."""
        ids, titles, texts = [], [], []
        for item in items:
            ids.append(str(item[0]))
            titles.append(item[1])
            texts.append(item[2] if len(item) > 2 else item[1])
        row_of = {item_id: row for row, item_id in enumerate(ids)}
        if len(row_of) != len(ids):
            raise DataError("catalog has duplicate item ids")
        digest = hashlib.sha256()
        for item_id, text in zip(ids, texts):
            digest.update(item_id.encode("utf-8") + b"\x00" + text.encode("utf-8", "surrogatepass") + b"\x01")
        return cls(ids=ids, titles=titles, texts=texts, row_of=row_of, content_hash=digest.hexdigest())

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, item_ids: Iterable[str]) -> list[int]:
        """Row numbers of `item_ids` (KeyError on an unknown id)."""
        return [self.row_of[item_id] for item_id in item_ids]


def read_catalog(path: Path, id_key: str = "item_id", title_key: str = "title",
                 text_keys: tuple[str, ...] = ()) -> Catalog:
    """Read a catalog file (JSONL, JSONL.gz or Parquet) with one item per line.

    `text_keys` name extra fields appended to the title in the text that retrievers index.
    Missing ids or titles and duplicate ids fail with the file and line.
    """
    items, first_line = [], {}
    for number, record in read_records(path):
        item_id = str(require(record, id_key, path, number))
        title = str(require(record, title_key, path, number)).strip()
        if item_id in first_line:
            raise DataError(f"{where(path, number)}: duplicate {id_key} {item_id!r} "
                            f"(first at line {first_line[item_id]})")
        first_line[item_id] = number
        extra = [str(record[key]).strip() for key in text_keys if record.get(key)]
        items.append((item_id, title, " ".join([title, *extra])))
    if not items:
        raise DataError(f"{path}: no items")
    return Catalog.from_items(items)
