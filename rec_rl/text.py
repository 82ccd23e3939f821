"""Text hygiene shared by every consumer of catalog and query text (analyzers, encoders)."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # control characters and surrogates


def clean_text(text: str) -> str:
    """`text` with control characters and surrogates replaced by spaces.

    Both separate words for the analyzer anyway, so the terms do not change; but a lone surrogate
    cannot cross into Java (or a Rust tokenizer) and a NUL would end the string there.

    Example:
        >>> clean_text("mario\\x00kart\\ud800 8")
        'mario kart  8'
    """
    return _UNSAFE.sub(" ", text)
