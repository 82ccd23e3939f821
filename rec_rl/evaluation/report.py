"""Per-system evaluation results, their bootstrap intervals, and the JSON + markdown reports."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rec_rl.evaluation.bootstrap import bootstrap_interval


@dataclass
class SystemResult:
    """One system's per-row metric values on an evaluation split, plus facts about the run."""

    name: str
    per_row: dict[str, np.ndarray]  # metric name -> value per evaluated row, rows in split order
    info: dict = field(default_factory=dict)  # e.g. seconds, mean query words, invalid-output rate

    def summary(self, resamples: int, seed: int) -> dict:
        """Mean and 95% bootstrap interval of every metric."""
        metrics = {}
        for name, values in self.per_row.items():
            mean, low, high = bootstrap_interval(values, resamples, seed)
            metrics[name] = {"mean": mean, "low": low, "high": high}
        return {"name": self.name, "rows": len(next(iter(self.per_row.values()))), "metrics": metrics,
                **self.info}


def markdown_table(summaries: list[dict], metric_names: list[str]) -> str:
    """Rows = systems, columns = metrics as `mean [low, high]` (x100, so 2.71 means 0.0271)."""
    extra = [key for key in ("seconds",) if any(key in s for s in summaries)]
    header = ["system", *[f"{m} (x100)" for m in metric_names], *extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for summary in summaries:
        cells = [summary["name"]]
        for metric in metric_names:
            value = summary["metrics"][metric]
            cells.append(f"{100 * value['mean']:.2f} [{100 * value['low']:.2f}, {100 * value['high']:.2f}]")
        cells += [f"{summary[key]:.1f}" if key in summary else "" for key in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(folder: Path, summaries: list[dict], metric_names: list[str], header: dict) -> str:
    """Write `metrics.json` and `metrics.md` into `folder`; return the markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    table = markdown_table(summaries, metric_names)
    facts = ", ".join(f"{key}: {value}" for key, value in header.items() if not isinstance(value, dict))
    markdown = f"{facts}\n\n95% bootstrap intervals in brackets.\n\n{table}\n"
    (folder / "metrics.md").write_text(markdown)
    (folder / "metrics.json").write_text(json.dumps({**header, "systems": summaries}, indent=2))
    return markdown
