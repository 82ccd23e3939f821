"""Self-documenting dataclass fields for every config section (shared by rec_rl.config and rewards.config)."""

from __future__ import annotations


def documented(text: str, choices: tuple | None = None, **kwargs) -> dict:
    """Keyword arguments for `dataclasses.field`: `help` text and allowed `choices` in the metadata.

    Example:
        >>> from dataclasses import dataclass, field
        >>> @dataclass
        ... class Section:
        ...     size: int = field(default=3, **documented("How many."))
    """
    metadata = {"help": text}
    if choices:
        metadata["choices"] = choices
    return {"metadata": metadata, **kwargs}
