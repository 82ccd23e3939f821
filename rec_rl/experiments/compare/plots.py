"""The comparison's pictures: every run's reward curve (and SFT loss), and metric bars with intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np

def plot_rewards(folders: dict[str, Path], path: Path) -> None:
    """Training reward of every run on one chart (5-step means), and the SFT loss of the explicit runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rec_rl.tracking import MetricsLog

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, folder in folders.items():
        train = [e for e in MetricsLog(folder / "metrics.jsonl").read() if e.get("kind") == "train" and "reward" in e]
        if train:
            rewards = np.array([e["reward"] for e in train], dtype=float)
            smooth = np.convolve(rewards, np.ones(5) / 5, mode="valid") if len(rewards) >= 5 else rewards
            left.plot([e["step"] for e in train][len(train) - len(smooth):], smooth, label=name)
        sft = [e for e in MetricsLog(folder / "sft_metrics.jsonl").read() if "loss" in e]
        if sft:
            right.plot([e["step"] for e in sft], [e["loss"] for e in sft], label=name)
    left.set(xlabel="GRPO step", ylabel="mean reward (5-step mean)", title="training reward of every route")
    right.set(xlabel="SFT step", ylabel="loss", title="explicit route: SFT warm-up")
    for axis in (left, right):
        if axis.lines:
            axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_metrics(summary: dict, path: Path, metrics: list[str]) -> None:
    """Horizontal bars of `metrics` per system, with 95% intervals, coloured by route."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = summary["systems"]
    colours = {"baseline": "tab:gray", "implicit": "tab:blue", "explicit": "tab:orange"}
    figure, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 0.35 * len(systems) + 1.5), sharey=True)
    for axis, metric in zip(np.atleast_1d(axes), metrics):
        means = np.array([100 * s["metrics"][metric]["mean"] for s in systems])
        errors = np.array([[means[i] - 100 * s["metrics"][metric]["low"], 100 * s["metrics"][metric]["high"] - means[i]]
                           for i, s in enumerate(systems)]).T
        axis.barh(range(len(systems)), means, xerr=errors, color=[colours[s["route"]] for s in systems], capsize=2)
        axis.set(xlabel=f"{metric} (x100)", title=metric)
    axes_list = np.atleast_1d(axes)
    axes_list[0].invert_yaxis()  # the first system on top (the axes share it)
    axes_list[0].set_yticks(range(len(systems)), [s["name"] for s in systems], fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    axes_list[-1].legend(handles, list(colours), loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
