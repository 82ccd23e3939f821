"""The on-disk cache shared by indexes and converted policies: where it lives, and atomic entry builds."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: `cache_dir`, else $REC_RL_CACHE, else ~/.cache/rec-rl."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("REC_RL_CACHE"):
        return Path(os.environ["REC_RL_CACHE"]).expanduser()
    return Path.home() / ".cache" / "rec-rl"


def build_atomically(path: Path, build: Callable[[Path], None]) -> None:
    """Run `build(folder)` on an empty temporary sibling of `path`, then rename it to `path` in one step.

    A crash mid-build leaves no entry at `path` (only a `.name.tmp-*` folder, which is ignored), and
    of two processes building the same entry at once the first rename wins and the other keeps it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    temporary.mkdir()
    try:
        build(temporary)
        try:
            temporary.rename(path)
        except OSError:
            if not path.exists():
                raise
            # Another process finished the same entry first: keep theirs (callers verify it).
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
