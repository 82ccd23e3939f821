"""Constrained decoding: a prefix trie over the catalog's codes, as token ids.

`CodeTrie.allowed(prefix)` lists the token ids that extend `prefix` towards some item's code, and the
end-of-answer ids once a code is complete, so a policy decoding under it can only write existing
items. `prefix_allowed_tokens_fn` adapts it to transformers' `generate(prefix_allowed_tokens_fn=...)`.

Example:
    >>> trie = CodeTrie([[10, 20], [10, 21], [11, 20]], end_ids=[0])
    >>> trie.allowed(()), trie.allowed((10,)), trie.allowed((10, 21))
    ([10, 11], [20, 21], [0])
"""

from __future__ import annotations

from collections.abc import Sequence


class CodeTrie:
    """Every prefix of every item's token-id code, mapped to the ids that may follow it."""

    def __init__(self, codes: Sequence[Sequence[int]], end_ids: Sequence[int]):
        if not end_ids:
            raise ValueError("a code trie needs at least one end id (eos or newline)")
        self.end_ids = sorted(set(end_ids))
        children: dict[tuple[int, ...], set[int]] = {}
        for code in codes:
            code = tuple(int(t) for t in code)
            for depth in range(len(code)):
                children.setdefault(code[:depth], set()).add(code[depth])
            children.setdefault(code, set())
        self._next = {prefix: sorted(ids) if ids else self.end_ids for prefix, ids in children.items()}

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Ids that may follow `prefix`; the end ids after a complete code or off the trie (never empty,
        so sampling always has a token to pick)."""
        return self._next.get(tuple(prefix), self.end_ids)


def prefix_allowed_tokens_fn(trie: CodeTrie, prompt_length: int):
    """transformers' `prefix_allowed_tokens_fn` for prompts left-padded to `prompt_length` tokens.

    Tokens after an end id (padding of a finished sequence) are not part of the code: the end ids are
    allowed again, which keeps a finished row's distribution defined.
    """
    end = set(trie.end_ids)

    def allowed(batch_id: int, input_ids) -> list[int]:
        generated = input_ids[prompt_length:].tolist()
        if any(token in end for token in generated):
            return trie.end_ids
        return trie.allowed(generated)

    return allowed
