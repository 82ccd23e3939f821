"""Per-system evaluation results, their bootstrap intervals, and the JSON + markdown reports."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rec_rl.evaluation.bootstrap import bootstrap_interval, holm


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


def interval_cell(value: dict, signed: bool = False) -> str:
    """`mean [low, high]` x100 (`n/a` for a metric with no rows); `signed` writes a difference's + sign."""
    if not np.isfinite(value["mean"]):
        return "n/a"
    number = "{:+.2f}" if signed else "{:.2f}"
    return " ".join([number.format(100 * value["mean"]),
                     f"[{number.format(100 * value['low'])}, {number.format(100 * value['high'])}]"])


def differences_table(differences: dict[str, dict[str, dict]], metric_names: list[str]) -> str:
    """Paired differences as markdown, one row per comparison, with Holm-adjusted significance over the whole table.

    `differences[label][metric]` is a `paired_difference` result; each gets `p_holm` and `significant_holm`
    added (in place), the family being every cell of this table. A cell reads
    `+0.60 [+0.01, +1.25] p=0.040 (Holm 0.320)`, in bold where the Holm-adjusted p is at most 0.05.
    """
    cells = [(label, name) for label in differences for name in metric_names]
    adjusted, reject = holm([differences[label][name]["p"] for label, name in cells])
    for (label, name), p, significant in zip(cells, adjusted, reject):
        differences[label][name].update(p_holm=p, significant_holm=bool(significant))
    lines = ["| comparison | " + " | ".join(metric_names) + " |", "|---|" + "---|" * len(metric_names)]
    for label, row in differences.items():
        texts = []
        for name in metric_names:
            d = row[name]
            text = f"{interval_cell(d, signed=True)} p={d['p']:.3f} (Holm {d['p_holm']:.3f})"
            texts.append(f"**{text}**" if d["significant_holm"] else text)
        lines.append(f"| {label} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


DIFFERENCES_NOTE = ("Paired bootstrap differences over the same users (x100, 95% interval, two-sided bootstrap p; "
                    "Holm-adjusted over every cell of the table, bold where the adjusted p <= 0.05):")


def markdown_table(summaries: list[dict], metric_names: list[str]) -> str:
    """Rows = systems, columns = metrics as `mean [low, high]` (x100, so 2.71 means 0.0271), then the seconds
    and the coverage (`rec_rl.evaluation.run.coverage`) where the systems report them."""
    coverage = sorted({key for s in summaries for key in s if key.startswith("distinct_items@")})
    extra = [key for key in ("seconds", "distinct_first_items", *coverage) if any(key in s for s in summaries)]
    header = ["system", *[f"{m} (x100)" for m in metric_names], *extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for summary in summaries:
        cells = [summary["name"]]
        cells += [interval_cell(summary["metrics"][metric]) for metric in metric_names]
        cells += ["" if key not in summary else f"{summary[key]:.1f}" if key == "seconds" else f"{summary[key]:,}"
                  for key in extra]
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
