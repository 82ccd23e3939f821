"""TRL's GRPO and RLOO trainers, timed: each logged step carries its seconds of generation, reward and the rest."""

from __future__ import annotations

import time

from trl import GRPOTrainer, RLOOTrainer


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


class TimedGRPOTrainer(StepTimer, GRPOTrainer):
    """TRL's GRPOTrainer with per-step timing."""


class TimedRLOOTrainer(StepTimer, RLOOTrainer):
    """TRL's RLOOTrainer with per-step timing."""


TRAINERS = {"grpo": TimedGRPOTrainer, "rloo": TimedRLOOTrainer}
