"""Shared fixtures: small datasets written to temporary folders, and an isolated index cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

TINY_ITEMS = [
    (0, "Super Mario Odyssey - Nintendo Switch"),
    (1, "The Legend of Zelda: Breath of the Wild"),
    (2, "Mario Kart 8 Deluxe"),
    (3, "Halo 5: Guardians - Xbox One"),
    (4, "Gears of War 4 - Xbox One"),
    (5, "Forza Horizon 3 - Xbox One"),
    (6, "FIFA 18 - PlayStation 4"),
    (7, "Uncharted 4: A Thief's End - PlayStation 4"),
    (8, "The Last of Us Remastered - PlayStation 4"),
    (9, "Splatoon 2 - Nintendo Switch"),
]
TINY_SEQUENCES = [
    ("u1", [0, 1, 2, 9]),
    ("u2", [3, 4, 5, 3 + 3]),
    ("u3", [6, 7, 8, 0, 1]),
    ("u4", [0, 2, 1, 9, 4]),
    ("u5", [7, 8, 6, 0, 2]),
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture
def tiny_sequential(tmp_path: Path) -> Path:
    """A 10-item, 5-user sequential dataset in the embedded data's schema."""
    folder = tmp_path / "tiny_seq"
    folder.mkdir()
    write_jsonl(folder / "items.jsonl", [{"item_id": i, "title": t} for i, t in TINY_ITEMS])
    write_jsonl(folder / "sequences.jsonl", [{"user_id": u, "item_ids": s} for u, s in TINY_SEQUENCES])
    return folder


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test builds indexes in its own cache, never in the user's ~/.cache/rec-rl."""
    monkeypatch.setenv("REC_RL_CACHE", str(tmp_path_factory.mktemp("cache")))
