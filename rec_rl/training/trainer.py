"""TRL's GRPO and RLOO trainers, timed, with the group-shared prompt forward (and, for GRPO, an SFT term).

Each logged step carries its seconds of generation, reward and the rest; the loss's forward runs each
distinct prompt once (rec_rl.training.shared_prefix) where that is safe; `train.grpo_sft_weight` adds the
cross-entropy of each row's target completion to GRPO's loss (`SupervisedTarget`).
"""

from __future__ import annotations

import time

import torch
from trl import GRPOTrainer, RLOOTrainer

from rec_rl.training.shared_prefix import shared_prefill_generate, shared_prefix_logps


class StepTimer:
    """Mixin for a TRL online trainer: logs `time/generation_s`, `time/reward_s` and `time/step_s` every step.

    Optimisation (forward, backward, optimizer) is the step time less generation and reward. GRPOTrainer
    and RLOOTrainer share these three methods, so one mixin times both.
    """

    def _timed(self, name: str, function, *args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self._metrics["train"][name].append(time.perf_counter() - started)

    def _generate(self, prompts):
        return self._timed("time/generation_s", super()._generate, prompts)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        return self._timed("time/reward_s", super()._calculate_rewards, inputs, prompts, completions,
                           completion_ids_list)

    def training_step(self, model, inputs, num_items_in_batch):
        return self._timed("time/step_s", super().training_step, model, inputs, num_items_in_batch)


class SharedPrefix:
    """Mixin for TRL's GRPO/RLOO trainers: each distinct prompt is computed once per batch.

    - Generation (transformers rollouts): each distinct prompt is prefilled once and its cache copied
      to the prompt's repeats (`shared_prefill_generate`). vLLM rollouts are left as they are (vLLM
      has its own prefix caching).
    - Loss: log-probabilities from one prompt forward per group (`shared_prefix_logps`), for text-only
      batches in a single process without gradient checkpointing; otherwise (several processes,
      whose wrapped model must run its own forward for gradient sync; checkpointing, which cannot
      keep a cache; images; MoE aux losses; chunked batches) TRL's own forward runs.
    """

    shared_prefix = True  # train.shared_prefix

    def _generate_single_turn(self, *args, **kwargs):
        if not self.shared_prefix or self.use_vllm or self.use_transformers_continuous_batching:
            return super()._generate_single_turn(*args, **kwargs)
        model = self.accelerator.unwrap_model(self.model)
        model.generate = shared_prefill_generate(model, model.generate)  # for TRL's `unwrapped_model.generate(...)`
        try:
            return super()._generate_single_turn(*args, **kwargs)
        finally:
            del model.generate  # the class's own method again

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        usable = (self.shared_prefix and not compute_aux_loss and all(v is None for v in multimodal.values())
                  and (batch_size is None or batch_size >= input_ids.size(0))
                  and self.accelerator.num_processes == 1 and not self.args.gradient_checkpointing)
        if usable:
            with self.accelerator.autocast():
                shared = shared_prefix_logps(model, input_ids, attention_mask, logits_to_keep, compute_entropy)
            if shared is not None:
                return (*shared, None)
        return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, batch_size,
                                                          compute_entropy, compute_aux_loss, **multimodal)


def target_cross_entropy(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                         target_ids: torch.Tensor) -> torch.Tensor:
    """The mean per-token cross-entropy of `target_ids` written after left-padded prompts: the SFT loss.

    Positions count from each row's first real token, as `generate` numbers left-padded rows, so a row scores
    the same whatever the padding beside it.

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=8, hidden_size=16, intermediate_size=32,
        ...                                      num_hidden_layers=1, num_attention_heads=2))
        >>> prompts, mask = torch.tensor([[0, 3, 4], [2, 5, 6]]), torch.tensor([[0, 1, 1], [1, 1, 1]])
        >>> target_cross_entropy(model, prompts, mask, torch.tensor([[1, 2], [7, 1]])).shape
        torch.Size([])
    """
    ids = torch.cat([prompt_ids, target_ids], dim=1)
    mask = torch.cat([prompt_mask, torch.ones_like(target_ids)], dim=1)
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
    width = target_ids.size(1)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=width + 1).logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), target_ids.reshape(-1))


class SupervisedTarget:
    """Mixin for TRL's GRPOTrainer: GRPO's loss plus `sft_weight` x the SFT loss of each row's target completion.

    RL alone sharpens what the policy samples; the supervised term keeps the likelihood of the items users
    actually chose, which the beam ranking reads. TRL's GRPOConfig has no such term, so it is added here:
    `sft_targets(row)` gives a dataset row's target completion as token ids (the explicit route: its target
    item's code), carried through TRL's batch splitting as a tensor beside the completions, and the term is
    logged as `sft_loss`.
    """

    sft_weight = 0.0  # train.grpo_sft_weight
    sft_targets = None  # row -> token ids of its target completion, every row the same length

    def _generate_and_score_completions(self, inputs):
        batch = super()._generate_and_score_completions(inputs)
        if self.sft_weight:
            batch["sft_target_ids"] = torch.tensor([self.sft_targets(row) for row in inputs],
                                                   device=batch["prompt_ids"].device)
        return batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if not self.sft_weight:
            return loss
        supervised = target_cross_entropy(model, inputs["prompt_ids"], inputs["prompt_mask"], inputs["sft_target_ids"])
        self._metrics["train" if model.training else "eval"]["sft_loss"].append(supervised.item())
        return loss + self.sft_weight * supervised


class TimedGRPOTrainer(StepTimer, SharedPrefix, SupervisedTarget, GRPOTrainer):
    """TRL's GRPOTrainer with per-step timing, the shared prompt forward and the optional SFT term."""


class TimedRLOOTrainer(StepTimer, SharedPrefix, RLOOTrainer):
    """TRL's RLOOTrainer with per-step timing and the shared prompt forward."""


TRAINERS = {"grpo": TimedGRPOTrainer, "rloo": TimedRLOOTrainer}
