"""Experiment tracking: wandb (offline unless the user is logged in), a local metrics.jsonl, and PNG curves.

Nothing here may wait for a login: without an API key wandb runs offline and writes its run into the
run folder, where `wandb sync` can upload it later.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def wandb_mode(requested: str) -> str:
    """`online`/`offline`/`disabled` as asked, and `auto` -> online only when an API key is available."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path.home() / ".netrc"
    logged_in = netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    return "online" if logged_in else "offline"


def configure_wandb(run_dir: Path, project: str, mode: str, group: str | None = None) -> str:
    """Point wandb at the run folder and set its mode through the environment TRL's callback reads."""
    resolved = wandb_mode(mode)
    os.environ["WANDB_MODE"] = resolved
    os.environ["WANDB_DIR"] = str(run_dir)
    os.environ["WANDB_PROJECT"] = project
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")  # console capture slows a CPU run and clutters the log
    if group:
        os.environ["WANDB_RUN_GROUP"] = group
    return resolved


def start_wandb_run(run_dir: Path, project: str, mode: str, config: dict) -> None:
    """Start the run's wandb run in `run_dir` (TRL's and transformers' callbacks then log into it).

    Started here rather than by the callback, because wandb reads WANDB_DIR once per process: a
    second run in the same process (tests, a comparison of several routes) would otherwise write
    into the first run's folder.
    """
    import wandb

    wandb.init(dir=str(run_dir), project=project, mode=mode, config=config)


def finish_wandb() -> None:
    """End the active wandb run, if any: one `rec-rl train` is one wandb run (the explicit route's SFT and
    RL stages share it), and a later run in the same process must start its own in its own folder."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


class MetricsLog:
    """Append-only `metrics.jsonl`: one JSON object per logged event, each with its `step`.

    `truncate_after(step)` drops events past a checkpoint's step, so that a resumed run neither
    duplicates nor loses steps. A run killed mid-write leaves a torn last line: reads skip it, and
    `truncate_after` rewrites the file without it, atomically. With `writable=False` (every process
    but the first of a multi-process run) writes are dropped and reads still see the file.
    """

    def __init__(self, path: Path, writable: bool = True):
        self.path, self.writable = path, writable
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: dict) -> None:
        if not self.writable:
            return
        clean = {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
                 for key, value in event.items()}
        with self.path.open("a") as handle:
            handle.write(json.dumps(clean) + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        text = self.path.read_text()
        lines = text.split("\n")
        events = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except ValueError as error:
                if number == len(lines):  # no newline after it: the write was cut off by a crash
                    logger.warning("%s: line %d is an unfinished write (the run was killed); skipped", self.path, number)
                    continue
                raise ValueError(f"{self.path}, line {number}: not a JSON event ({error})") from None
        return events

    def truncate_after(self, step: int) -> None:
        if not self.writable:
            return
        kept = [event for event in self.read() if event.get("step", 0) <= step]
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text("".join(json.dumps(event) + "\n" for event in kept))
        os.replace(partial, self.path)  # a crash here keeps the old log whole


def plot_curves(events: list[dict], path: Path, title: str) -> None:
    """Training reward and validation metrics against step, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [e for e in events if e.get("kind") == "train" and e.get("reward") is not None]
    valid = [e for e in events if e.get("kind") == "valid"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        steps = [e["step"] for e in train]
        left.plot(steps, [e["reward"] for e in train], alpha=0.35, label="reward (per step)")
        window = max(1, len(train) // 10)
        smooth = [sum(e["reward"] for e in train[max(0, i - window + 1):i + 1]) / len(train[max(0, i - window + 1):i + 1])
                  for i in range(len(train))]
        left.plot(steps, smooth, label=f"reward ({window}-step mean)")
    floors = next((e for e in events if e.get("kind") == "valid" and "trivial/reward" in e), {})
    if "trivial/reward" in floors:  # the floor: the trivial query's reward on a sample of training rows
        left.axhline(floors["trivial/reward"], color="gray", linestyle="--", label="trivial query (training rows)")
    if left.lines:
        left.legend(loc="best")
    left.set(xlabel="step", ylabel="mean reward", title="training reward")
    if valid:
        metrics = [key for key in valid[0] if "@" in key and "/" not in key]
        for key in metrics:
            (line,) = right.plot([e["step"] for e in valid], [e[key] for e in valid], marker="o", label=key)
            if f"trivial/{key}" in floors:
                right.axhline(floors[f"trivial/{key}"], color=line.get_color(), linestyle="--", alpha=0.6,
                              label=f"{key}, trivial query")
        right.legend(loc="best", fontsize=7)
    right.set(xlabel="step", ylabel="metric", title="validation (greedy queries)")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def is_main_process() -> bool:
    """True in a single-process run and in the first process of an `accelerate launch` / torchrun run.

    Every process runs the same evaluations (under DeepSpeed ZeRO-3 each holds only a shard of the
    weights, so generation needs them all in step); only the first writes the run folder.
    """
    return int(os.environ.get("RANK", "0")) == 0
