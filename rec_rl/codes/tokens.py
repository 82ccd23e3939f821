"""Semantic tokens: one new vocabulary token per (level, code), e.g. `<a_12><b_201><c_7><d_0>`.

Level l is written with the l-th letter; the code is its number in that level's codebook. The tokens
are ordinary added tokens (not "special"), so decoding with `skip_special_tokens=True` keeps them.

Initialisation (`add_code_tokens`): let m_c be the mean, over the items whose level-a code is c, of the
mean embedding of their title's tokens, and m the mean of a level's m_c. The input embedding of `<a_c>`
is m + s (m_c - m) / |m_c - m|, with s the median norm of the pretrained vocabulary's rows. A new token
thus starts near the words of its items (m_c - m points from the level's average towards them), at the
vocabulary's scale and distinct from its level's other codes: the plain means m_c had a norm of ~0.9
against ~3.2 for SmolLM2's words and a pairwise cosine of ~0.99, so with SmolLM2's tied output layer
every code logit started nearly equal.

Example:
    >>> code_text([12, 201, 7, 0])
    '<a_12><b_201><c_7><d_0>'
    >>> parse_codes("Codes: <a_12><b_201><c_7><d_0> and <a_3><b_1>")
    [(12, 201, 7, 0), (3, 1)]
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"<([a-z])_(\d{1,6})>")


def code_token(level: int, code: int) -> str:
    """The token for `code` at `level` (0-based)."""
    return f"<{string.ascii_lowercase[level]}_{code}>"


def code_text(code: Sequence[int]) -> str:
    """An item's code as the token string the policy writes."""
    return "".join(code_token(level, int(c)) for level, c in enumerate(code))


def vocabulary(codebook_sizes: Sequence[int]) -> list[str]:
    """Every semantic token, level by level."""
    if len(codebook_sizes) > len(string.ascii_lowercase):
        raise ValueError(f"{len(codebook_sizes)} code levels; at most {len(string.ascii_lowercase)} are supported")
    return [code_token(level, code) for level, size in enumerate(codebook_sizes) for code in range(size)]


def parse_codes(text: str) -> list[tuple[int, ...]]:
    """The code sequences written in `text`, in order; a malformed text gives what can be read.

    A sequence is a run of tokens whose levels go a, b, c, ... without gaps; an `<a_..>` token starts a
    new one, and a token out of order ends the current one (it is dropped). Text between tokens is ignored.
    """
    sequences: list[tuple[int, ...]] = []
    current: list[int] = []
    for match in _TOKEN.finditer(text):
        level, code = ord(match.group(1)) - ord("a"), int(match.group(2))
        if level == 0:
            if current:
                sequences.append(tuple(current))
            current = [code]
        elif current and level == len(current):
            current.append(code)
        elif current:
            sequences.append(tuple(current))
            current = []
    if current:
        sequences.append(tuple(current))
    return sequences


def strip_codes(text: str) -> str:
    """`text` without its semantic tokens: the words a hybrid identifier writes beside its code.

    Example:
        >>> strip_codes("<a_3><b_1> halo xbox")
        'halo xbox'
    """
    return " ".join(_TOKEN.sub(" ", text).split())


def title_embeddings(model, tokenizer, titles: Sequence[str]) -> np.ndarray:
    """Mean input embedding of each title's tokens, (n_titles, hidden)."""
    import torch

    table = model.get_input_embeddings().weight.detach().float()
    out = np.zeros((len(titles), table.shape[1]), np.float32)
    for i, ids in enumerate(tokenizer(list(titles), add_special_tokens=False)["input_ids"]):
        if ids:
            out[i] = table[torch.tensor(ids)].mean(0).numpy()
    return out


def add_code_tokens(model, tokenizer, codes: np.ndarray, codebook_sizes: Sequence[int], titles: Sequence[str]) -> list[int]:
    """Add the semantic tokens to `tokenizer` and `model`, initialised as the module docstring says; return their ids.

    Tokens already in the vocabulary (a policy that has them) are left as they are.
    """
    import torch
    from tokenizers import AddedToken

    tokens = vocabulary(codebook_sizes)
    known = tokenizer.get_vocab()  # once: it builds a dict of the whole vocabulary
    missing = [t for t in tokens if t not in known]
    if missing:
        tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in missing])
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        per_item = title_embeddings(model, tokenizer, titles)
        fallback = per_item.mean(0)
        table = model.get_input_embeddings().weight
        scale = float(table[:len(tokenizer) - len(missing)].detach().float().norm(dim=1).median())
        with torch.no_grad():
            for level, size in enumerate(codebook_sizes):
                sums = np.zeros((size, per_item.shape[1]), np.float64)
                counts = np.zeros(size)
                np.add.at(sums, codes[:, level], per_item)
                np.add.at(counts, codes[:, level], 1)
                means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], fallback)
                centre = means.mean(0)
                offsets = means - centre
                norms = np.linalg.norm(offsets, axis=1, keepdims=True)
                means = centre + scale * offsets / np.where(norms > 0, norms, 1.0)
                ids = tokenizer.convert_tokens_to_ids([code_token(level, c) for c in range(size)])
                table[torch.tensor(ids)] = torch.as_tensor(means, dtype=table.dtype)
    return tokenizer.convert_tokens_to_ids(tokens)


def with_history_codes(rows, codes: np.ndarray, catalog):
    """`rows` (a task split) plus `history_codes`: the code text of each item in its `history_titles`.

    What a template with `show_codes` (history_titles_codes) prints beside each title.
    """
    def add(row):
        shown = row["history_item_ids"][len(row["history_item_ids"]) - len(row["history_titles"]):]
        return {"history_codes": [code_text(codes[catalog.row_of[item]]) for item in shown]}
    return rows.map(add, desc="history codes")
