"""Checkpoints of a run folder: which step each holds, and the newest one a resume can trust."""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a `checkpoint-<step>` folder was saved at."""
    return int(checkpoint.name.split("-")[1])


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint whose save finished, or None.

    transformers writes a checkpoint's files in place and its `trainer_state.json` last, so a run killed
    mid-save leaves a newer folder without a readable state; it is skipped (with a warning) for the one
    before it, which `save_total_limit` rotation only deletes after the new save completes.
    """
    found = sorted((p for p in folder.glob("checkpoint-*") if p.name.split("-")[1].isdigit()),
                   key=checkpoint_step, reverse=True)
    for checkpoint in found:
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
            return checkpoint
        except (OSError, ValueError):
            logger.warning("%s is incomplete (its save was interrupted); resuming from an earlier checkpoint", checkpoint)
    return None
