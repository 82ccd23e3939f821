"""TRL's GRPO and RLOO trainers, timed, with the group-shared prompt forward.

Each logged step carries its seconds of generation, reward and the rest; the loss's forward runs each
distinct prompt once (rec_rl.training.shared_prefix) where that is safe.
"""

from __future__ import annotations

import time

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


class TimedGRPOTrainer(StepTimer, SharedPrefix, GRPOTrainer):
    """TRL's GRPOTrainer with per-step timing and the shared prompt forward."""


class TimedRLOOTrainer(StepTimer, SharedPrefix, RLOOTrainer):
    """TRL's RLOOTrainer with per-step timing and the shared prompt forward."""


TRAINERS = {"grpo": TimedGRPOTrainer, "rloo": TimedRLOOTrainer}
