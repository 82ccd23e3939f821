"""Prompts carry the user's own context only: no catalog text beyond the user's history reaches the policy."""

from __future__ import annotations

import dataclasses

import pytest

from rec_rl.config import load_config
from rec_rl.data import load_task
from rec_rl.policy import tiny_policy
from rec_rl.prompts import TEMPLATES, build_messages, get_template, render_prompt
from rewards.parsing import extract_query


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_policy(tmp_path_factory.mktemp("tiny")))


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_no_catalog_text_beyond_the_users_history(name, tokenizer):
    task = load_task(load_config().data)
    titles = {title.lower() for title in task.catalog.titles if len(title) >= 8}
    rows = task.split("test", 200, seed=1)
    for row in rows:
        if get_template(name).show_codes:  # the items' codes, as the explicit route adds them
            row = {**row, "history_codes": ["<a_1><b_2><c_3>"] * len(row["history_titles"])}
        prompt = render_prompt(row, get_template(name), tokenizer, max_title_chars=10_000).lower()
        own = {task.catalog.titles[task.catalog.row_of[i]].lower() for i in row["history_item_ids"][-len(row["history_titles"]):]}
        for title in sorted(own, key=len, reverse=True):  # longest first: one title may contain another
            if get_template(name).codes_only:  # the history's codes alone: no title, the user's own neither
                assert title not in prompt
                continue
            assert title in prompt  # the user's own recent titles are there ...
            prompt = prompt.replace(title, " ")
        leaked = [title for title in titles if title in prompt]
        assert not leaked, f"{name}: catalog titles in the prompt beyond the user's history: {leaked[:3]}"
        target = task.catalog.titles[task.catalog.row_of[row["target_item_ids"][0]]].lower()
        assert target not in prompt or target in own


def test_prefilled_answer_is_continued(tokenizer):
    row = {"history_titles": ["Halo 3", "Gears of War"], "query": ""}
    template = TEMPLATES["history_query"]
    prompt = render_prompt(row, template, tokenizer)
    assert prompt.endswith("<|im_start|>assistant\nQuery:")  # continued, not closed and reopened
    assert extract_query(" halo gears xbox", template.parse).text == "halo gears xbox"


def test_example_template_teaches_the_format_its_parser_reads(tokenizer):
    template = TEMPLATES["history_query_example"]
    messages = build_messages({"history_titles": ["Halo 3"], "query": ""}, template)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert extract_query(template.example_answer, template.parse).well_formed
    assert render_prompt({"history_titles": ["Halo 3"], "query": ""}, template, tokenizer).endswith("<|im_start|>assistant\n")


def test_long_titles_are_cut_and_search_rows_use_the_query(tokenizer):
    long_row = {"history_titles": ["x" * 500], "query": ""}
    assert "x" * 81 not in render_prompt(long_row, TEMPLATES["history_query"], tokenizer, max_title_chars=80)
    search = render_prompt({"history_titles": [], "query": "usb c cable"}, TEMPLATES["search_rewrite"], tokenizer)
    assert "Shopper's search: usb c cable" in search


def test_unknown_template_lists_the_known_ones():
    with pytest.raises(KeyError, match="history_query"):
        get_template("nope")


def test_codes_template_prints_each_titles_code_newest_first(tokenizer):
    row = {"history_titles": ["Halo 3", "Gears of War"], "history_codes": ["<a_1><b_2>", "<a_3><b_4>"], "query": ""}
    user = build_messages(row, TEMPLATES["history_titles_codes"])[-2]["content"]
    assert user == "- Gears of War <a_3><b_4>\n- Halo 3 <a_1><b_2>"
    with pytest.raises(ValueError, match="history_codes"):
        build_messages({"history_titles": ["Halo 3"], "query": ""}, TEMPLATES["history_titles_codes"])


def _leaks(prompt: str, own: set[str], titles: set[str]) -> list[str]:
    """Catalog titles in `prompt` once the user's own titles are taken out (longest first)."""
    prompt = prompt.lower()
    for title in sorted(own, key=len, reverse=True):
        prompt = prompt.replace(title, " ")
    return [title for title in titles if title in prompt]


@pytest.mark.parametrize("template", ["history_query_recent", "history_titles_codes"])
def test_the_prompts_training_and_evaluation_use_hold_only_the_users_history(template, tiny_sequential, tokenizer):
    """Through the real paths: `prompt_rows` (GRPO and evaluation) and `sft_examples` (the explicit warm-up)."""
    from rec_rl.codes.build import item_codes
    from rec_rl.codes.tokens import with_history_codes
    from rec_rl.training.rows import prompt_rows
    from rec_rl.training.sft import sft_examples

    overrides = [f"data.path={tiny_sequential}", f"train.template={template}", "codes.levels=2", "codes.codebook_bits=2",
                 "data.history_len=2"]
    config = load_config(None, overrides + (["retriever.backend=codes"] if "codes" in template else []))
    task = load_task(config.data)
    titles = {title.lower() for title in task.catalog.titles}
    codes = item_codes(task.catalog, config.codes)
    for split in ("train", "valid", "test"):
        rows = task.split(split)
        if get_template(template).show_codes:
            rows = with_history_codes(rows, codes.codes, task.catalog)
        for row, prompt in zip(rows, prompt_rows(rows, config, tokenizer)["prompt"]):
            own = {title.lower() for title in row["history_titles"]}
            assert all(title in prompt.lower() for title in own)
            assert not _leaks(prompt, own, titles), (split, prompt)

    # The explicit warm-up's history examples are the same prompts; its alignment examples (one per catalog
    # item, train.sft_alignment=true) do show every catalog title with its code: the one place the policy
    # sees the catalog, as the README says.
    examples = sft_examples(task, codes, config, tokenizer)
    aligned = [e["prompt"].lower() for e in examples if "code of the game named" in e["prompt"]]
    assert len(aligned) == len(task.catalog) and all(any(t in p for p in aligned) for t in titles)
    history = [e for e in examples if "code of the game named" not in e["prompt"]]
    train_rows = {row["row_id"]: row for row in task.split("train")}
    assert len(history) == len(train_rows)
    unaligned = sft_examples(task, codes, dataclasses.replace(config, train=dataclasses.replace(
        config.train, sft_alignment=False)), tokenizer)
    assert len(unaligned) == len(train_rows)
    for example in unaligned:
        owners = [r for r in train_rows.values() if all(t.lower() in example["prompt"].lower() for t in r["history_titles"])]
        owner = max(owners, key=lambda r: len(r["history_titles"]))  # a shorter history may be contained in it
        assert not _leaks(example["prompt"], {t.lower() for t in owner["history_titles"]}, titles)
