"""SFT before GRPO: teach the explicit route's policy what its semantic tokens mean, or start the implicit
route's policy at the trivial query (`train.warm_start`, `clone_trivial_query`).

Two kinds of data (`train.sft_data`), both through TRL's SFTTrainer on the train split:
- `next_item`: history -> the next item's code, one example per user in the GRPO prompt format, plus
  title -> code per catalog item (`train.sft_alignment`), which ties each code to words;
- `sequence` (TIGER / SASRec): each user's train sequence, every item before the validation and test
  targets, as one causal text of codes, so every next-item position is supervised; several epochs in
  length-grouped batches, scored on validation users after each epoch, stopped when that stops rising
  (`rec_rl.training.callbacks.EpochValidationCallback`).

A pretrained policy (`policy.lora`) trains LoRA adapters on the configured layers and the new tokens'
embedding rows: the embedding matrix (tied to the output layer in SmolLM2) is trainable with a gradient
hook that zeroes every other row, so the pretrained vocabulary stays as it was (AdamW with weight decay
0 never moves a row whose gradient is always 0). peft's own `trainable_token_indices` would do this, but
TRL's SFT loss reads the output layer's weight directly and fails on peft's wrapper of a tied layer. The
result is merged. The compact policy (`policy.model=codes-lm`, no LoRA) trains all its weights. Either
way the policy is saved as a plain model folder, which GRPO starts from and evaluation loads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Callable
from pathlib import Path

import datasets

from rec_rl.codes.tokens import code_text, with_history_codes
from rec_rl.config import RunConfig
from rec_rl.data import TaskData
from rec_rl.policy import load_policy, lora_config
from rec_rl.prompts import build_messages, get_template, render_prompt

ALIGNMENT_TEMPLATE = "title_code"


def answer(codes, catalog, row: int, config: RunConfig) -> str:
    """The SFT target for catalog row `row`: its code, and with hybrid identifiers its title words too."""
    text = code_text(codes.codes[row])
    if config.codes.hybrid_weight > 0:
        text += " " + catalog.titles[row][:config.train.max_title_chars].strip()
    return text


def sft_examples(task: TaskData, codes, config: RunConfig, tokenizer, seed: int = 0) -> datasets.Dataset:
    """Prompt/completion pairs: every train row's next item code, plus title -> code pairs, shuffled."""
    template = get_template(config.train.template)
    rows = task.split("train")
    if template.show_codes:
        rows = with_history_codes(rows, codes.codes, task.catalog)
    examples = []
    for row in rows:
        target = task.catalog.row_of[row["target_item_ids"][0]]
        examples.append({"prompt": render_prompt(row, template, tokenizer, config.train.max_title_chars),
                         "completion": answer(codes, task.catalog, target, config)})
    if config.train.sft_alignment:
        alignment = get_template(ALIGNMENT_TEMPLATE)
        for row, title in enumerate(task.catalog.titles):
            context = {"history_titles": [title], "query": ""}
            examples.append({"prompt": render_prompt(context, alignment, tokenizer, config.train.max_title_chars),
                             "completion": code_text(codes.codes[row])})  # alignment: the code alone
    random.Random(seed).shuffle(examples)
    return datasets.Dataset.from_list(examples)


def sequence_examples(task: TaskData, codes, config: RunConfig, tokenizer) -> datasets.Dataset:
    """TIGER's next-item pretraining data: per user, the codes of the train sequence's last `train.sft_max_items`
    items (the train row's history and target: everything before the validation and test targets), oldest
    first, as the conversation text the prompt template writes (its user turn, no assistant turn), so the
    text of a prompt is a prefix of it. SFTTrainer supervises every token of it. With `train.sft_holdout_target`
    the train row's target is left out (the history alone), for RL to be rewarded on unseen transitions. With
    `train.sft_test_history` a test user's sequence is its test row's history instead (one item more: the one
    the baselines count and the test prompt ends with, never the test target); validation users are in no
    test row, so theirs still stop at the train target."""
    template = get_template(config.train.template)
    rows = task.split("train")
    test_histories = {}
    if config.train.sft_test_history:
        test = task.split("test")
        test_histories = dict(zip(test["row_id"], test["history_item_ids"]))
    texts = []
    for user, history, target in zip(rows["row_id"], rows["history_item_ids"], rows["target_item_ids"]):
        if user in test_histories:
            items = test_histories[user]
        else:
            items = history + ([] if config.train.sft_holdout_target else target)
        items = items[-config.train.sft_max_items:]
        context = {"history_titles": [task.catalog.titles[task.catalog.row_of[i]] for i in items], "query": "",
                   "history_codes": [code_text(codes.codes[task.catalog.row_of[i]]) for i in items]}
        messages = [m for m in build_messages(context, template, config.train.max_title_chars) if m["role"] != "assistant"]
        texts.append(tokenizer.apply_chat_template(messages, tokenize=False))
    return datasets.Dataset.from_dict({"text": texts})


def trivial_query_examples(task: TaskData, config: RunConfig, tokenizer, count: int | None = None) -> datasets.Dataset:
    """Behaviour-cloning data for the implicit route's `train.warm_start`: train rows' prompts -> the trivial
    query, the last `data.history_len` titles as the prompt shows them (cut at `train.max_title_chars`). They
    are written newest first, the prompt's order: BM25 ranks a bag of words, so the order does not change
    the answer's score, and an answer cut by the completion cap keeps the most recent titles. They are
    separated by "; ", which the retrievers' tokenizers drop: without a mark between titles the cloned policy
    lost its place in the list and looped ("Guitar Hero 3 Guitar Hero Aerosmith Guitar Hero 3 ...",
    docs/runs/implicit_levers/). `count` takes that many rows (seeded), else all."""
    template = get_template(config.train.template)
    rows = task.split("train", count, config.seed)
    examples = [{"prompt": render_prompt(row, template, tokenizer, config.train.max_title_chars),
                 "completion": " " + "; ".join(title[:config.train.max_title_chars].strip()
                                        for title in reversed(row["history_titles"][-config.data.history_len:]))}
                for row in rows]
    return datasets.Dataset.from_list(examples)


def clone_trivial_query(model, tokenizer, task: TaskData, config: RunConfig, run_dir: Path):
    """`train.warm_start`: SFT (TRL's SFTTrainer, `train.sft`, LoRA as `policy.lora*`, merged) on
    `trivial_query_examples`; returns the model, also saved with its tokenizer in `run_dir/sft`."""
    from trl import SFTTrainer

    from rec_rl.tracking import MetricsLog, is_main_process
    from rec_rl.training.callbacks import MetricsLogCallback
    from rec_rl.training.trl_args import sft_args

    args = sft_args(config, run_dir / "sft_checkpoints")
    examples = args.max_steps * args.per_device_train_batch_size * args.gradient_accumulation_steps
    data = trivial_query_examples(task, config, tokenizer, examples if examples > 0 else None)
    callbacks = [MetricsLogCallback(MetricsLog(run_dir / "sft_metrics.jsonl", writable=is_main_process()),
                                    kind="sft", marker="loss")]
    peft = lora_config(config.policy) if config.policy.lora else None
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                         callbacks=callbacks, peft_config=peft)
    with label_positions_only():
        trainer.train()
    return saved_policy(trainer.model, tokenizer, peft is not None, run_dir)


def saved_policy(model, tokenizer, lora: bool, run_dir: Path):
    """The SFT's result as a plain model (LoRA merged), saved with its tokenizer in `run_dir/sft`, where GRPO,
    evaluation and a resumed run (`load_sft_policy`) find it."""
    from rec_rl.tracking import is_main_process

    trained = model.merge_and_unload() if lora else model
    if is_main_process():
        trained.save_pretrained(run_dir / "sft")
        tokenizer.save_pretrained(run_dir / "sft")
    return trained


def load_sft_policy(config: RunConfig, run_dir: Path, eos):
    """(model, tokenizer) that an earlier SFT saved in `run_dir/sft`, with the caller's stop ids `eos` (line ends)."""
    model, tokenizer = load_policy(dataclasses.replace(config.policy, model=str(run_dir / "sft")))
    model.generation_config.eos_token_id = eos
    return model, tokenizer


@contextlib.contextmanager
def label_positions_only():
    """While active, TRL's fused LM head scores only the positions that have a label (the completion) on CPU too.

    TRL does so on Triton devices (CUDA, XPU) and scores every position elsewhere, to keep tile shapes
    fixed for graph compilers (Neuron). Nothing compiles on CPU, where the prompt and padding positions'
    49k-word projections were 64% of an SFT step (py-spy). Same values: only labelled positions enter the loss.
    """
    from trl.trainer import utils

    use_triton = utils._use_triton
    utils._use_triton = lambda device: device.type == "cpu" or use_triton(device)
    try:
        yield
    finally:
        utils._use_triton = use_triton


def warm_up(model, tokenizer, task: TaskData, codes, token_ids: list[int], config: RunConfig, run_dir: Path,
            validate: Callable[[object], dict] | None = None):
    """Run the SFT and return the trained model (also saved, with the tokenizer, in `run_dir/sft`).

    `validate(model) -> metrics` scores the policy on validation users; with `train.sft_data=sequence` it
    runs before training and after every epoch, and the best epoch (by NDCG at the first of `eval.ks`) is kept.
    """
    from trl import SFTTrainer

    from rec_rl.tracking import MetricsLog, is_main_process
    from rec_rl.training.callbacks import EpochValidationCallback, MetricsLogCallback
    from rec_rl.training.trl_args import sft_args

    import torch
    from peft import get_peft_model

    sequences = config.train.sft_data == "sequence"
    args = sft_args(config, run_dir / "sft_checkpoints")
    if sequences:
        args.train_sampling_strategy = "group_by_length"  # users of similar length share a batch: little padding
    detach = None
    if config.policy.lora:
        model = get_peft_model(model, lora_config(config.policy))
        # The input embeddings, and the output layer where it is not tied to them (SmolLM2's is).
        tables = {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings())}
        for table in tables.values():
            new_rows = torch.zeros(table.shape[0], 1, dtype=table.dtype)
            new_rows[list(token_ids)] = 1
            table.requires_grad_(True)
            table.register_hook(lambda grad, new_rows=new_rows: grad * new_rows)
        if not config.train.sft_input_grad:
            # Backward then stops at the lowest LoRA layer instead of running the whole depth down to the
            # embeddings: about half an SFT step's FLOPs with LoRA on the top layers. The LoRA gradients are
            # unchanged; only the new tokens' input-side gradient is lost (a tied table still learns them
            # through the output layer).
            detach = model.get_input_embeddings().register_forward_hook(lambda module, inputs, output: output.detach())
    log = MetricsLog(run_dir / "sft_metrics.jsonl", writable=is_main_process())
    callbacks = [MetricsLogCallback(log, kind="sft", marker="loss")]
    if sequences and validate is not None:
        callbacks.append(EpochValidationCallback(validate, log, f"ndcg@{config.eval.ks[0]}", config.train.sft_patience,
                                                 run_dir / "sft_curves.png"))
    data = (sequence_examples(task, codes, config, tokenizer) if sequences
            else sft_examples(task, codes, config, tokenizer, config.seed))
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, callbacks=callbacks)
    with label_positions_only():
        trainer.train()
    if detach is not None:
        detach.remove()
    return saved_policy(trainer.model, tokenizer, config.policy.lora, run_dir)
