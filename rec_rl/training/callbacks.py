"""Trainer callbacks: the local metrics log, periodic validation, and the curves PNG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from rec_rl.tracking import MetricsLog, plot_curves


class MetricsLogCallback(TrainerCallback):
    """Writes every training log event into the metrics log: RL steps (which carry `reward` and the
    step-time breakdown) by default, or SFT steps with `kind="sft", marker="loss"`."""

    def __init__(self, log: MetricsLog, kind: str = "train", marker: str = "reward"):
        self.log, self.kind, self.marker = log, kind, marker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and self.marker in logs:  # training steps; the trainer's closing summary has neither
            self.log.write({"kind": self.kind, "step": state.global_step, **logs, **gpu_memory()})


def gpu_memory() -> dict:
    """The GPU memory peak so far (MiB), on a machine with CUDA; nothing elsewhere."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"memory/peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}


class ValidationCallback(TrainerCallback):
    """Every `every` steps (and after the last), scores the policy's greedy queries on fixed validation rows.

    The result goes to metrics.jsonl, to wandb when a run is active, and refreshes the curves PNG
    (only where the log is writable: not in the processes of a multi-process run other than the first).
    """

    def __init__(self, evaluate: Callable[[object], dict], log: MetricsLog, every: int, plot_path: Path, title: str):
        self.evaluate, self.log, self.every = evaluate, log, every
        self.plot_path, self.title = plot_path, title

    def _run(self, state, model) -> None:
        metrics = self.evaluate(model)
        self.log.write({"kind": "valid", "step": state.global_step, **metrics})
        try:
            import wandb

            if wandb.run is not None:
                wandb.log({f"valid/{key}": value for key, value in metrics.items()} | {"train/global_step": state.global_step})
        except ImportError:
            pass
        if self.log.writable:
            plot_curves(self.log.read(), self.plot_path, self.title)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every and state.global_step % self.every == 0 and state.global_step < state.max_steps:
            self._run(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.every:
            self._run(state, model)
