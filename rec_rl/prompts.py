"""Prompt templates: what the policy reads. All templates live here; config picks one by name.

A prompt holds the user's own context only (their recent item titles, or their search query) and,
for some templates, one worked example whose titles are invented: no catalog text beyond the user's
own history ever reaches the policy. The chat template of the model is applied by TRL (the prompt is
a list of messages), so any chat model works.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptTemplate:
    """A system message, an optional worked example (user turn + assistant answer), and the user turn."""

    system: str
    user: str  # formatted with {context}
    example_context: str = ""
    example_answer: str = ""


# The worked example's titles are made up (a test checks they match no catalog title), so the
# example teaches the answer format without leaking catalog text or a real answer to copy.
_EXAMPLE_HISTORY = "- Star Voyager: Dark Orbit - PC\n- Star Voyager II: Frontier (Collector's Edition) - PC"

TEMPLATES: dict[str, PromptTemplate] = {
    # Sequential recommendation, implicit route: write a keyword query for the next item.
    "history_query": PromptTemplate(
        system=("You write search queries for a video game store. Read the games a customer bought, "
                "then write one short keyword query that finds the next game they will buy. "
                "Answer with one line: Query: <keywords>"),
        user="Games bought, oldest first:\n{context}",
        example_context=_EXAMPLE_HISTORY,
        example_answer="Query: star voyager space strategy pc",
    ),
    # The same without the worked example: a shorter prompt, so cheaper steps.
    "history_query_short": PromptTemplate(
        system=("You write search queries for a video game store. Read the games a customer bought, "
                "then write one short keyword query that finds the next game they will buy. "
                "Answer with one line: Query: <keywords>"),
        user="Games bought, oldest first:\n{context}",
    ),
    # Rec-R1's answer format: reasoning is allowed, the query goes inside <answer> tags.
    "history_query_tags": PromptTemplate(
        system=("You write search queries for a video game store. Read the games a customer bought and "
                "write a keyword query that finds the next game they will buy. Put the query inside "
                "<answer> </answer> tags."),
        user="Games bought, oldest first:\n{context}",
        example_context=_EXAMPLE_HISTORY,
        example_answer="<answer>star voyager space strategy pc</answer>",
    ),
    # Product search (ESCI): rewrite the shopper's query into a better keyword query.
    "search_rewrite": PromptTemplate(
        system=("You rewrite shopping searches into keyword queries for a product search engine. "
                "Answer with one line: Query: <keywords>"),
        user="Shopper's search: {context}",
        example_context="red running shoes for women",
        example_answer="Query: women red running shoes lightweight trainers",
    ),
}


def user_context(row: dict, max_title_chars: int) -> str:
    """The row's own context: its history titles as a list (each cut to `max_title_chars`), or its query."""
    if row["history_titles"]:
        return "\n".join(f"- {title[:max_title_chars].strip()}" for title in row["history_titles"])
    return row["query"]


def build_messages(row: dict, template: PromptTemplate, max_title_chars: int = 120) -> list[dict]:
    """The conversational prompt for one dataset row.

    Example:
        >>> row = {"history_titles": ["Halo 3", "Gears of War"], "query": ""}
        >>> [m["role"] for m in build_messages(row, TEMPLATES["history_query"])]
        ['system', 'user', 'assistant', 'user']
    """
    messages = [{"role": "system", "content": template.system}]
    if template.example_answer:
        messages += [{"role": "user", "content": template.user.format(context=template.example_context)},
                     {"role": "assistant", "content": template.example_answer}]
    messages.append({"role": "user", "content": template.user.format(context=user_context(row, max_title_chars))})
    return messages


def get_template(name: str) -> PromptTemplate:
    """The template called `name`, or a KeyError listing the known ones."""
    if name not in TEMPLATES:
        raise KeyError(f"unknown prompt template {name!r}; known: {sorted(TEMPLATES)}")
    return TEMPLATES[name]
