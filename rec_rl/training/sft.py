"""Warm-up SFT for the explicit route: teach the policy what its new semantic tokens mean.

A pretrained LM has never seen `<a_12>`, so before GRPO it learns, with TRL's SFTTrainer on the
train split:
- history -> the next item's code (the task itself, in the GRPO prompt format), and
- title -> code, one example per catalog item (`train.sft_alignment`), which ties each code to words.
LoRA adapters train on the configured layers, and so do the new tokens' embedding rows: the embedding
matrix (tied to the output layer in SmolLM2) is trainable with a gradient hook that zeroes every other
row, so the pretrained vocabulary stays as it was (AdamW with weight decay 0 never moves a row whose
gradient is always 0). peft's own `trainable_token_indices` would do this, but TRL's SFT loss reads
the output layer's weight directly and fails on peft's wrapper of a tied layer. The result is merged
and saved as a plain model folder, which GRPO starts from and evaluation loads.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import datasets

from rec_rl.codes.tokens import code_text, with_history_codes
from rec_rl.config import RunConfig
from rec_rl.data import TaskData
from rec_rl.policy import lora_config
from rec_rl.prompts import get_template, render_prompt

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


def warm_up(model, tokenizer, task: TaskData, codes, token_ids: list[int], config: RunConfig, run_dir: Path):
    """Run the SFT warm-up and return the merged model (also saved, with the tokenizer, in `run_dir/sft`)."""
    from trl import SFTTrainer

    from rec_rl.tracking import MetricsLog, is_main_process
    from rec_rl.training.callbacks import MetricsLogCallback
    from rec_rl.training.trl_args import sft_args

    import torch
    from peft import get_peft_model

    args = sft_args(config, run_dir / "sft_checkpoints")
    model = get_peft_model(model, lora_config(config.policy))  # ExplicitRoute.check made sure LoRA is on
    # The input embeddings, and the output layer where it is not tied to them (SmolLM2's is).
    tables = {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings())}
    for table in tables.values():
        new_rows = torch.zeros(table.shape[0], 1, dtype=table.dtype)
        new_rows[list(token_ids)] = 1
        table.requires_grad_(True)
        table.register_hook(lambda grad, new_rows=new_rows: grad * new_rows)
    detach = None
    if not config.train.sft_input_grad:
        # Backward then stops at the lowest LoRA layer instead of running the whole depth down to the
        # embeddings: about half an SFT step's FLOPs with LoRA on the top layers. The LoRA gradients are
        # unchanged; only the new tokens' input-side gradient is lost (a tied table still learns them
        # through the output layer).
        detach = model.get_input_embeddings().register_forward_hook(lambda module, inputs, output: output.detach())
    log = MetricsLog(run_dir / "sft_metrics.jsonl", writable=is_main_process())
    trainer = SFTTrainer(model=model, args=args, train_dataset=sft_examples(task, codes, config, tokenizer, config.seed),
                         processing_class=tokenizer, callbacks=[MetricsLogCallback(log, kind="sft", marker="loss")])
    with label_positions_only():
        trainer.train()
    if detach is not None:
        detach.remove()
    merged = trainer.model.merge_and_unload()
    if is_main_process():
        merged.save_pretrained(run_dir / "sft")
        tokenizer.save_pretrained(run_dir / "sft")
    return merged
