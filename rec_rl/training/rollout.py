"""Constrained GRPO rollouts: TRL's documented `rollout_func` hook, under the code trie.

TRL's own transformers rollouts take no logits processor, so the explicit route generates here, in one
of two ways (`train.rollout`):

- `sample`: TRL's sampling settings (temperature, top_p, top_k, max_completion_length), with
  `prefix_allowed_tokens_fn` restricting every step to valid codes; a group may repeat a code.
- `beam`: each group is its prompt's top `num_generations` codes of constrained beam search
  (`rec_rl.codes.beam`), as MiniOneRec trains: the group is then the head of the ranked list that
  evaluation scores (`eval.decoding=beam`), with no repeats, and each completion's place in it is
  returned as `beam_rank` (0 = best), which TRL hands to the reward functions (`reward.rank_weight`).

With `write_end` off (`train.rollout_end=omit`), a completion is the code alone, without the end token the trie
puts after it, so GRPO's loss has no term on that token. In a policy pretrained on whole sequences
(`train.sft_data=sequence`) the end token follows only a sequence's last item: it says "the history ends here",
nothing about the code, yet it moves the hidden state after a code, the state the next item's first level is
read from.

The returned logprobs are None, as in TRL's own transformers path: the loss recomputes them with the
policy (beams are not samples, so the policy gradient is MiniOneRec's biased estimate, not an unbiased one).
"""

from __future__ import annotations

import torch

from rec_rl.codes.beam import beam_search_codes, level_tables
from rec_rl.codes.trie import CodeTrie, prefix_allowed_tokens_fn
from rec_rl.training.shared_prefix import shared_prefill_generate

ROLLOUTS = ("sample", "beam")


def constrained_rollout(trie: CodeTrie, tokenizer, depth: int, mode: str = "sample", write_end: bool = True):
    """A `rollout_func(prompts, trainer)` for GRPOTrainer: one completion per (already repeated) prompt.

    `depth` is the number of tokens of a code (the trie's depth); `mode` one of `ROLLOUTS`; `write_end` whether
    a completion ends with the end token after its code (else it is the code's `depth` tokens).
    """
    if mode not in ROLLOUTS:
        raise ValueError(f"unknown rollout {mode!r}; expected one of {list(ROLLOUTS)}")
    end = set(trie.end_ids)
    # The end written after a beam's code: the tokenizer's eos where the trie ends on it (what SFT taught).
    end_id = tokenizer.eos_token_id if tokenizer.eos_token_id in end else trie.end_ids[0]
    tables = level_tables(trie, depth) if mode == "beam" else None

    def prompt_ids_of(inputs) -> list[list[int]]:
        return [ids[mask.bool()].tolist() for ids, mask in zip(inputs["input_ids"].cpu(), inputs["attention_mask"].cpu())]

    def sample(prompts: list[str], trainer) -> dict:
        args = trainer.args
        model = trainer.accelerator.unwrap_model(trainer.model)
        tokenizer.padding_side = "left"
        inputs = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        width = inputs["input_ids"].shape[1]
        with torch.no_grad():
            generate = shared_prefill_generate(model) if trainer.shared_prefix else model.generate
            budget = args.max_completion_length if write_end else min(depth, args.max_completion_length)
            output = generate(**inputs, do_sample=True, temperature=args.temperature, top_p=args.top_p,
                              top_k=args.top_k or None, max_new_tokens=budget,
                              prefix_allowed_tokens_fn=prefix_allowed_tokens_fn(trie, width),
                              pad_token_id=tokenizer.pad_token_id)
        completion_ids = []
        for ids in output[:, width:].tolist():
            stop = next((i for i, token in enumerate(ids) if token in end), len(ids))
            completion_ids.append(ids[:stop + 1] if write_end else ids[:stop])
        return {"prompt_ids": prompt_ids_of(inputs), "completion_ids": completion_ids, "logprobs": None}

    def beam(prompts: list[str], trainer) -> dict:
        group = trainer.num_generations
        if len(prompts) % group or any(len(set(prompts[i:i + group])) != 1 for i in range(0, len(prompts), group)):
            raise RuntimeError(f"train.rollout=beam expects each prompt repeated num_generations={group} times in a "
                               "row (TRL's RepeatSampler); got another order")
        model = trainer.accelerator.unwrap_model(trainer.model)
        heads = prompts[::group]
        ranked = beam_search_codes(model, tokenizer, heads, trie, depth, group, batch_size=len(heads),
                                   desc="beam rollouts", tables=tables)
        completion_ids, ranks = [], []
        for beams in ranked:
            # A catalog with fewer codes than the group repeats its last beam, ranked after it.
            codes = [code for code, _ in beams] or [tuple()]
            for rank in range(group):
                completion_ids.append(list(codes[min(rank, len(codes) - 1)]) + ([end_id] if write_end else []))
                ranks.append(rank)
        heads_ids = [tokenizer(head, add_special_tokens=False)["input_ids"] for head in heads]
        return {"prompt_ids": [ids for ids in heads_ids for _ in range(group)], "completion_ids": completion_ids,
                "logprobs": None, "beam_rank": ranks}

    return sample if mode == "sample" else beam
