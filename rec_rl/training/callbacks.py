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


class EpochValidationCallback(TrainerCallback):
    """SFT early stopping on validation users: score the policy before training and after every epoch, keep the
    best epoch's weights, stop after `patience` epochs without a better `metric` (0: run every epoch).

    Written here because transformers' EarlyStoppingCallback stops on the Trainer's own `evaluate()` metrics
    (a loss over an eval dataset), while the number that matters is the ranking (NDCG@10 of beam search over
    the whole catalog) on validation users. Each point goes to the log as `kind="sft_valid"`, and the curve
    is redrawn (`plot_sft_curve`) after each.
    """

    def __init__(self, evaluate: Callable[[object], dict], log: MetricsLog, metric: str, patience: int, plot_path: Path):
        self.evaluate, self.log, self.metric, self.patience, self.plot_path = evaluate, log, metric, patience, plot_path
        self.best, self.best_state, self.waited = -float("inf"), None, 0

    def _run(self, state, model, epoch: int) -> dict:
        metrics = self.evaluate(model)
        self.log.write({"kind": "sft_valid", "epoch": epoch, "step": state.global_step, **metrics})
        if self.log.writable:
            plot_sft_curve(self.log.read(), self.plot_path, self.metric)
        if metrics[self.metric] > self.best:
            self.best, self.waited = metrics[self.metric], 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.waited += 1
        return metrics

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._run(state, model, 0)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self._run(state, model, round(state.epoch or 0))
        if self.patience and self.waited >= self.patience:
            control.should_training_stop = True

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def plot_sft_curve(events: list[dict], path: Path, metric: str) -> None:
    """SFT: training loss against step; the validation metrics against epoch, beside popularity (dashed) and
    transitions (dotted) on the same users; each level's accuracy beside its majority floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [e for e in events if e.get("kind") == "sft" and e.get("loss") is not None]
    valid = [e for e in events if e.get("kind") == "sft_valid"]
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    if train:
        left.plot([e["step"] for e in train], [e["loss"] for e in train])
    left.set(xlabel="step", ylabel="loss per token", title="SFT training loss")
    epochs = [e["epoch"] for e in valid]
    for key in [k for k in (valid[0] if valid else {}) if "@" in k and "/" not in k]:
        middle.plot(epochs, [e[key] for e in valid], marker="o", label=key)
    floors = next((e for e in events if e.get("kind") == "sft_valid" and "floor/" + metric in e), {})
    for prefix, name, style in (("floor/", "popularity", "--"), ("bar/", "transitions", ":")):
        for key in [k for k in floors if k.startswith(prefix)]:
            middle.axhline(floors[key], linestyle=style, color="gray", alpha=0.7,
                           label=f"{key.removeprefix(prefix)}, {name}")
    if middle.lines:
        middle.legend(loc="best", fontsize=7)
    middle.set(xlabel="epoch", ylabel="metric", title="validation users (beam ranking)")
    levels = sorted({k.split("/")[1] for e in valid for k in e if k.startswith("level_accuracy/")})
    for level in levels:
        (line,) = right.plot(epochs, [e.get(f"level_accuracy/{level}") for e in valid], marker="o", label=f"level {level}")
        right.axhline(valid[0][f"level_floor/{level}"], color=line.get_color(), linestyle="--", alpha=0.6)
    if right.lines:
        right.legend(loc="best", fontsize=7)
    right.set(xlabel="epoch", ylabel="accuracy", title="per-level code accuracy (dashed: majority floor)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
