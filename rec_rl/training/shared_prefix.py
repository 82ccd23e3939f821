"""GRPO/RLOO batches with each distinct prompt computed once: in generation and in the loss.

GRPO and RLOO score `num_generations` completions of every prompt, and both transformers' generate
and TRL's loss forward run each (prompt + completion) row whole, so every prompt is computed
`num_generations` times. Here prompts are long (~120 tokens) and completions short (<= 24), so most
of that work is repeated. Causal attention makes a prompt's keys and values independent of what
follows it, so they are computed once per distinct prompt and copied across its group:
- `shared_prefill_generate`: generation continues from the copied prompt cache (no gradients);
- `shared_prefix_logps`: the loss's log-probabilities, with gradients through the shared keys and
  values (LoRA changes them); only the completions run per row.

Both give what the plain path gives, to float rounding, gradients included (tests/test_training.py
compares them), with positions and padding as each plain path has them.

Example:
    >>> logps, entropies = shared_prefix_logps(peft_model, input_ids, attention_mask, logits_to_keep=24,
    ...                                        compute_entropy=True)   # doctest: +SKIP
    >>> shared_prefill_generate(model)(input_ids=ids, attention_mask=mask, max_new_tokens=24)  # doctest: +SKIP
"""

from __future__ import annotations

import torch


def backbone_of(model):
    """The decoder stack (no LM head) of a causal LM, under its PEFT wrapper if there is one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.base_model


def distinct_prefixes(input_ids: torch.Tensor, attention_mask: torch.Tensor, width: int):
    """(ids, mask) of the distinct first `width` columns of the rows, and each row's index among them;
    None when every row differs (nothing to share)."""
    distinct, group = torch.unique(torch.cat([input_ids[:, :width], attention_mask[:, :width]], dim=1), dim=0,
                                   return_inverse=True)
    if len(distinct) == len(input_ids):
        return None
    return distinct[:, :width], distinct[:, width:], group


def shared_prefix_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                        compute_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Log-probabilities (and entropies) of the last `logits_to_keep` tokens of each row; None when no
    two rows share a prompt (nothing to save: the caller runs its plain forward).

    `model` must carry TRL's fused LM head (`trl.trainer.utils.add_fused_lm_head`), as the GRPO and
    RLOO trainers' models do. The prompt is everything before the last `logits_to_keep` columns.
    """
    prompt_width = input_ids.size(1) - logits_to_keep
    if prompt_width < 2:
        return None
    # The prefix stops one token short of the prompt: the prompt's last token runs with the completion,
    # so that its hidden state is there to score the completion's first token.
    shared = distinct_prefixes(input_ids, attention_mask, prompt_width - 1)
    if shared is None:
        return None
    ids, mask, group = shared
    cache = backbone_of(model)(input_ids=ids, attention_mask=mask, use_cache=True).past_key_values
    cache.batch_select_indices(group)  # each row gets its prompt's keys and values (indexing keeps gradients)
    rest = input_ids[:, prompt_width - 1:]
    labels = rest.masked_fill(attention_mask[:, prompt_width - 1:] == 0, -100)
    labels[:, 0] = -100  # the prompt's last token is context, not scored
    outputs = model(input_ids=rest, attention_mask=attention_mask, past_key_values=cache, labels=labels,
                    fused_lm_head=True)
    entropies = outputs.entropy[:, -logits_to_keep:] if compute_entropy else None
    return outputs.log_probs[:, -logits_to_keep:], entropies


def shared_prefill_generate(model, generate=None):
    """`model.generate` that prefills each distinct prompt once and copies its cache across repeats.

    GRPO's generation batch holds every prompt `num_generations` times; transformers would prefill
    each copy. The distinct prompts (all but their last token) are run once, with the positions
    `generate` gives left-padded rows, and `generate` continues from that cache, so it computes
    only the last prompt token and the new ones per row. Falls back to plain `generate` when no
    prompt repeats, or when the call already brings a cache or asks for a static one.
    """
    generate = generate or model.generate

    def wrapped(input_ids=None, attention_mask=None, **kwargs):
        config = kwargs.get("generation_config") or model.generation_config
        plain = (input_ids is None or attention_mask is None or input_ids.size(1) < 2 or "past_key_values" in kwargs
                 or "cache" in kwargs or getattr(config, "cache_implementation", None) is not None)
        shared = None if plain else distinct_prefixes(input_ids, attention_mask, input_ids.size(1) - 1)
        if shared is None:
            return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        ids, mask, group = shared
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as generate numbers left-padded rows
        with torch.no_grad():
            cache = backbone_of(model)(input_ids=ids, attention_mask=mask, position_ids=positions,
                                       use_cache=True).past_key_values
        cache.batch_select_indices(group)
        return generate(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, **kwargs)

    return wrapped
