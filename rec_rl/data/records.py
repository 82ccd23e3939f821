"""Reading user data files row by row, so that every error can name its file and line."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path


class DataError(ValueError):
    """A data file is missing, malformed or inconsistent; the message names file and line (or row)."""


def resolve_file(folder: Path, name: str) -> Path:
    """`folder/name`, or its gzip-compressed twin `folder/name.gz` when only that one exists."""
    path = folder / name
    if path.exists():
        return path
    compressed = folder / (name + ".gz")
    if compressed.exists():
        return compressed
    raise DataError(f"{path}: file not found (nor {compressed.name})")


def read_records(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield `(line_or_row_number, record)` from a JSONL (optionally .gz) or Parquet file.

    Line numbers are 1-based and count blank lines, so they match what an editor shows.
    Parquet files have no lines; their 1-based row numbers are used instead.
    """
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for number, record in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield number, record
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield number, record


def where(path: Path, number: int) -> str:
    """`file:line` for JSONL files, `file row N` for Parquet files."""
    return f"{path} row {number}" if path.suffix == ".parquet" else f"{path}:{number}"


def require(record: dict, key: str, path: Path, number: int):
    """`record[key]`, or a DataError naming file, line and key when it is missing or null."""
    value = record.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where(path, number)}: missing {key!r}")
    return value
