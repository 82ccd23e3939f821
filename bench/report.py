"""What every benchmark shares: the machine it ran on, a markdown table, and its JSON file."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine() -> str:
    """The CPU and core count, e.g. `x86_64, 2 cores` (what the tables' numbers depend on)."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """`rows` as a markdown table of `columns`; floats get thousands separators and sensible digits."""
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
        return "" if value is None else f"{value:,}" if isinstance(value, int) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write `payload` (with the machine added) as indented JSON, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
