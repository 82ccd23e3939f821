"""Constrained GRPO rollouts: TRL's documented `rollout_func` hook, sampling under the code trie.

TRL's own transformers rollouts take no logits processor, so the explicit route generates here:
the same sampling settings as TRL's (temperature, top_p, top_k, max_completion_length), with
`prefix_allowed_tokens_fn` restricting every step to valid codes. The returned logprobs are None,
as in TRL's own transformers path: the loss recomputes them with the policy.
"""

from __future__ import annotations

import torch

from rec_rl.codes.trie import CodeTrie, prefix_allowed_tokens_fn
from rec_rl.training.shared_prefix import shared_prefill_generate


def constrained_rollout(trie: CodeTrie, tokenizer):
    """A `rollout_func(prompts, trainer)` for GRPOTrainer: one completion per (already repeated) prompt."""
    end = set(trie.end_ids)

    def rollout(prompts: list[str], trainer) -> dict:
        args = trainer.args
        model = trainer.accelerator.unwrap_model(trainer.model)
        tokenizer.padding_side = "left"
        inputs = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        width = inputs["input_ids"].shape[1]
        with torch.no_grad():
            generate = shared_prefill_generate(model) if trainer.shared_prefix else model.generate
            output = generate(**inputs, do_sample=True, temperature=args.temperature, top_p=args.top_p,
                              top_k=args.top_k or None, max_new_tokens=args.max_completion_length,
                              prefix_allowed_tokens_fn=prefix_allowed_tokens_fn(trie, width),
                              pad_token_id=tokenizer.pad_token_id)
        prompt_ids = [ids[mask.bool()].tolist() for ids, mask in zip(inputs["input_ids"].cpu(), inputs["attention_mask"].cpu())]
        completion_ids = []
        for ids in output[:, width:].tolist():
            stop = next((i for i, token in enumerate(ids) if token in end), len(ids) - 1)
            completion_ids.append(ids[:stop + 1])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout
