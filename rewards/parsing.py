"""From a policy completion to the query it asks the retriever for.

Completions come as TRL gives them: a string (standard format) or a list of chat messages
(conversational format). Parsing never raises on a completion: anything it cannot read is empty,
malformed text.

Modes (`extract_query(completion, mode)`):
- "plain": the whole text.
- "answer_tag": the text inside the last `<answer>...</answer>` (Rec-R1, DeepSeek-R1).
  Without a closed tag: the text after the last `<answer>`, or else the whole text, not well formed.
- "query_line": the rest of the first line that starts with `Query:` (what rec-rl's prompts ask for;
  case, markdown bold and list markers are tolerated). Without one: the first non-empty line, not
  well formed.

A query is well formed when its mode's format was followed and it is not empty. Every query is
cleaned the same way: control characters and lone surrogates (which no retriever can encode)
become spaces, and runs of whitespace one space.

With `reward.query_expansion` the retriever searches the user's last titles followed by the query
(`expand_query`): the policy writes what to add to the trivial query, not the whole query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

PARSE_MODES = ("plain", "answer_tag", "query_line")

_OPEN, _CLOSE = "<answer>", "</answer>"
_QUERY_PREFIX = re.compile(r"[\s*_#>-]*query[\s*_]*:[\s*_]*", re.IGNORECASE)
_UNREADABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class ParsedQuery(NamedTuple):
    """The query text of one completion and whether the completion followed the answer format."""

    text: str
    well_formed: bool


def completion_text(completion) -> str:
    """The generated text of a TRL completion: a string, or the content of the last assistant message.

    Message content may be a string or a list of `{"type": "text", "text": ...}` parts (joined).
    Anything else (None, bytes, numbers, other structures) reads as "".

    Example:
        >>> completion_text([{"role": "assistant", "content": "Query: halo"}])
        'Query: halo'
        >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "Query: halo"}]}])
        'Query: halo'
        >>> completion_text(None)
        ''
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        messages = [message for message in completion if isinstance(message, dict)]
        replies = [message for message in messages if _role(message) == "assistant"]
        if replies or messages:
            return _content_text((replies or messages)[-1].get("content"))
    return ""


def _role(message: dict) -> str | None:
    role = message.get("role")
    return role if isinstance(role, str) else None


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "".join(part["text"] for part in content
                       if isinstance(part, dict) and part.get("type", "text") == "text"
                       and isinstance(part.get("text"), str))
    return ""


def clean_query(text: str) -> str:
    """`text` with unreadable characters as spaces and whitespace collapsed.

    Example:
        >>> clean_query("  zelda\\x00 switch\\ud800\\n  rpg ")
        'zelda switch rpg'
    """
    return " ".join(_UNREADABLE.sub(" ", text).split())


def extract_query(completion, mode: str = "query_line") -> ParsedQuery:
    """The query in `completion` (a string or chat messages) under parse `mode` (see the module docstring).

    Example:
        >>> extract_query("Query: zelda breath of the wild", "query_line")
        ParsedQuery(text='zelda breath of the wild', well_formed=True)
        >>> extract_query("<think>a sequel</think><answer>halo 5</answer>", "answer_tag")
        ParsedQuery(text='halo 5', well_formed=True)
        >>> extract_query("zelda\\nmore text", "query_line")
        ParsedQuery(text='zelda', well_formed=False)
    """
    if mode not in PARSE_MODES:
        raise ValueError(f"unknown parse mode {mode!r}; expected one of {list(PARSE_MODES)}")
    text = completion_text(completion)
    if mode == "plain":
        query, followed = text, True
    elif mode == "answer_tag":
        query, followed = _answer_tag(text)
    else:
        query, followed = _query_line(text)
    query = clean_query(query)
    return ParsedQuery(query, followed and bool(query))


def _answer_tag(text: str) -> tuple[str, bool]:
    # rfind, not a regex: a lazy `<answer>(.*?)</answer>` rescans to the end from every opening tag,
    # quadratic on a long completion full of unclosed tags.
    close = text.rfind(_CLOSE)
    if close >= 0:
        start = text.rfind(_OPEN, 0, close)
        if start >= 0:
            return text[start + len(_OPEN):close], True
    start = text.rfind(_OPEN)
    rest = text[start + len(_OPEN):] if start >= 0 else text
    return rest.replace(_CLOSE, " "), False


def _query_line(text: str) -> tuple[str, bool]:
    lines = text.splitlines()
    for line in lines:
        prefix = _QUERY_PREFIX.match(line)
        if prefix:
            return line[prefix.end():], True
    return next((line for line in lines if clean_query(line)), ""), False


def format_answer(query: str, mode: str = "query_line") -> str:
    """A completion that answers with `query` in parse `mode`: the inverse of `extract_query`.

    Example:
        >>> format_answer("halo 5", "answer_tag")
        '<answer>halo 5</answer>'
        >>> extract_query(format_answer("halo 5", "query_line"), "query_line").text
        'halo 5'
    """
    if mode not in PARSE_MODES:
        raise ValueError(f"unknown parse mode {mode!r}; expected one of {list(PARSE_MODES)}")
    return {"plain": query, "answer_tag": f"{_OPEN}{query}{_CLOSE}", "query_line": f"Query: {query}"}[mode]


def expand_query(query: str, history_titles: Sequence[str]) -> str:
    """`reward.query_expansion`'s search text: the user's history titles, oldest first (the trivial query),
    followed by the policy's `query`, as query2doc (Wang et al., 2023) appends a generated text to the query
    it expands. The policy's words change the trivial query's ranking rather than replace it.

    Example:
        >>> expand_query("co-op shooter", ["Halo 3", "Gears of War 2"])
        'Halo 3 Gears of War 2 co-op shooter'
    """
    return " ".join([*history_titles, query]).strip()
