"""Prompt templates: what the policy reads. All templates live here; config picks one by name.

A prompt holds the user's own context only (their recent item titles, or their search query) and,
for some templates, one worked example whose titles are invented: no catalog text beyond the user's
own history reaches the policy in a GRPO or evaluation prompt (tested through `prompt_rows`). The one
exception is training data, not prompts: the explicit route's SFT warm-up with `train.sft_alignment`
(on by default) teaches title -> code for every catalog item (`title_code`), so that policy has seen
each title with its code.

`render_prompt` applies the model's own chat template, so any chat model works. A template may
pre-fill the start of the assistant's answer (`answer_prefix`, e.g. "Query:"): the completion is then
the query itself, the format cannot be missed, and no worked example is needed to teach it, which
keeps prompts short (prompt tokens dominate generation and training cost on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptTemplate:
    """A system message, an optional worked example (user turn + assistant answer), and the user turn."""

    system: str
    user: str  # formatted with {context}
    parse: str  # how rewards read the query from a completion (rewards.parsing mode)
    answer_prefix: str = ""  # pre-filled start of the assistant's answer
    example_context: str = ""
    example_answer: str = ""
    newest_first: bool = False  # list the history newest first, so the titles nearest the answer come first
    show_codes: bool = False  # each history title is followed by its item's semantic code (explicit route)
    writes: str = "query"  # what the answer is: a search query (implicit route) or an item's code (explicit)
    codes_only: bool = False  # the context is the history's codes alone, oldest first, no words (codes-lm)


# The worked example's titles are made up (a test checks they match no catalog title), so the
# example teaches the answer format without leaking catalog text or a real answer to copy.
_EXAMPLE_HISTORY = "- Star Voyager: Dark Orbit - PC\n- Star Voyager II: Frontier (Collector's Edition) - PC"

_HISTORY_SYSTEM = ("You write search queries for a video game store. Read the games a customer bought, "
                   "then write one short keyword query that finds the next game they will buy.")
_RECENT_SYSTEM = ("You write search queries for a video game store. The customer's games are listed newest first. "
                  "Write one short keyword query that finds the next game they will buy.")

TEMPLATES: dict[str, PromptTemplate] = {
    # Sequential recommendation, implicit route: the answer starts pre-filled with "Query:".
    "history_query": PromptTemplate(
        system=_HISTORY_SYSTEM,
        user="Games bought, oldest first:\n{context}",
        parse="plain",
        answer_prefix="Query:",
    ),
    # As history_query, but newest first: a policy that copies the start of the list copies the most
    # recent titles, which are the strongest evidence of the next item.
    "history_query_recent": PromptTemplate(
        system=_RECENT_SYSTEM,
        user="{context}",
        parse="plain",
        answer_prefix="Query:",
        newest_first=True,
    ),
    # The same answer format taught by a worked example instead of a pre-fill: a longer prompt.
    "history_query_example": PromptTemplate(
        system=_HISTORY_SYSTEM + " Answer with one line: Query: <keywords>",
        user="Games bought, oldest first:\n{context}",
        parse="query_line",
        example_context=_EXAMPLE_HISTORY,
        example_answer="Query: star voyager space strategy pc",
    ),
    # Rec-R1's answer format: reasoning is allowed, the query goes inside <answer> tags.
    "history_query_tags": PromptTemplate(
        system=("You write search queries for a video game store. Read the games a customer bought and "
                "write a keyword query that finds the next game they will buy. Think briefly, then put the "
                "query inside <answer> </answer> tags."),
        user="Games bought, oldest first:\n{context}",
        parse="answer_tag",
        example_context=_EXAMPLE_HISTORY,
        example_answer="A space strategy fan.<answer>star voyager space strategy pc</answer>",
    ),
    # Explicit route: the answer is the next item's semantic code (rec_rl.codes), pre-filled with "Code:".
    "history_codes": PromptTemplate(
        system=("You recommend video games. The customer's games are listed newest first. Answer with the "
                "code of the next game they will buy."),
        user="{context}",
        parse="plain",
        answer_prefix="Code:",
        newest_first=True,
        writes="codes",
    ),
    # As history_codes, each title followed by its item's code (TIGER's input is the history's codes): the
    # policy reads codes as well as writes them, and can copy or vary a code it sees.
    "history_titles_codes": PromptTemplate(
        system=("You recommend video games. The customer's games are listed newest first, each with its code. "
                "Answer with the code of the next game they will buy."),
        user="{context}",
        parse="plain",
        answer_prefix="Code:",
        newest_first=True,
        show_codes=True,
        writes="codes",
    ),
    # Explicit route, TIGER's input: the history's codes oldest first, nothing else. The compact policy
    # (policy.model=codes-lm, rec_rl.codes.lm) knows no words; its chat template drops the system message.
    "codes_sequence": PromptTemplate(
        system="",
        user="{context}",
        parse="plain",
        show_codes=True,
        writes="codes",
        codes_only=True,
    ),
    # Explicit route, SFT alignment: one game's title -> its code (rec_rl.training.sft).
    "title_code": PromptTemplate(
        system="You recommend video games. Answer with the code of the game named.",
        user="{context}",
        parse="plain",
        answer_prefix="Code:",
        writes="codes",
    ),
    # Product search (ESCI): rewrite the shopper's query into a better keyword query.
    "search_rewrite": PromptTemplate(
        system="You rewrite shopping searches into keyword queries for a product search engine.",
        user="Shopper's search: {context}",
        parse="plain",
        answer_prefix="Query:",
    ),
}


def user_context(row: dict, max_title_chars: int, newest_first: bool = False, show_codes: bool = False,
                 codes_only: bool = False) -> str:
    """The row's own context: its history titles as a list (each cut to `max_title_chars`, and followed by
    the item's code from the row's `history_codes` with `show_codes`), or its query; with `codes_only`, the
    history's codes run together, oldest first."""
    if codes_only:
        if "history_codes" not in row:
            raise ValueError("this prompt template is the history's item codes; its rows need `history_codes` "
                             "(rec_rl.codes.tokens.with_history_codes, retriever.backend=codes)")
        return "".join(row["history_codes"])
    if row["history_titles"]:
        lines = [f"- {title[:max_title_chars].strip()}" for title in row["history_titles"]]
        if show_codes:
            if "history_codes" not in row:
                raise ValueError("this prompt template shows item codes; its rows need `history_codes` "
                                 "(rec_rl.codes.tokens.with_history_codes, retriever.backend=codes)")
            lines = [f"{line} {code}" for line, code in zip(lines, row["history_codes"])]
        return "\n".join(lines[::-1] if newest_first else lines)
    return row["query"]


def build_messages(row: dict, template: PromptTemplate, max_title_chars: int = 120) -> list[dict]:
    """The conversation for one dataset row, ending in the pre-filled assistant answer if the template has one.

    Example:
        >>> row = {"history_titles": ["Halo 3", "Gears of War"], "query": ""}
        >>> [m["role"] for m in build_messages(row, TEMPLATES["history_query_example"])]
        ['system', 'user', 'assistant', 'user']
        >>> build_messages(row, TEMPLATES["history_query"])[-1]
        {'role': 'assistant', 'content': 'Query:'}
    """
    messages = [{"role": "system", "content": template.system}]
    if template.example_answer:
        messages += [{"role": "user", "content": template.user.format(context=template.example_context)},
                     {"role": "assistant", "content": template.example_answer}]
    messages.append({"role": "user", "content": template.user.format(context=user_context(row, max_title_chars, template.newest_first, template.show_codes,
                                                                                     template.codes_only))})
    if template.answer_prefix:
        messages.append({"role": "assistant", "content": template.answer_prefix})
    return messages


def render_prompt(row: dict, template: PromptTemplate, tokenizer, max_title_chars: int = 120) -> str:
    """The prompt text the policy continues: `build_messages` through the tokenizer's chat template.

    Rendered here rather than by TRL, because TRL always opens a fresh assistant turn and so cannot
    continue a pre-filled answer.
    """
    messages = build_messages(row, template, max_title_chars)
    prefilled = bool(template.answer_prefix)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=not prefilled,
                                         continue_final_message=prefilled)


def get_template(name: str) -> PromptTemplate:
    """The template called `name`, or a KeyError listing the known ones."""
    if name not in TEMPLATES:
        raise KeyError(f"unknown prompt template {name!r}; known: {sorted(TEMPLATES)}")
    return TEMPLATES[name]
