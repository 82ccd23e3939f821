"""compare.md: the main table, the paired test and the cold-start table."""

from __future__ import annotations

from rec_rl.evaluation.report import DIFFERENCES_NOTE, interval_cell

def _number(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def markdown(summary: dict, header: str, sample_rows: int, cold_rows: int) -> str:
    """compare.md: the main table, the paired test, and the cold-start table."""
    names = summary["metric_names"]
    columns = ["system", "route", *[f"{m} (x100)" for m in names], "invalid %", "query words", "tokens generated",
               "SFT s", "RL s (with validation)", "test eval s", "peak MB", "policy: prompt"]
    lines = [header, "", f"## All systems: {sample_rows} sampled test users (95% bootstrap intervals)", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for s in summary["systems"]:
        invalid = None if s["invalid_rate"] is None else 100 * s["invalid_rate"]
        cells = [s["name"], s["route"], *[interval_cell(s["metrics"][m]) for m in names], _number(invalid),
                 _number(s["mean_query_words"]), _number(s["tokens_generated"], 0), _number(s["sft_seconds"], 0),
                 _number(s["rl_seconds"], 0), _number(s["test_eval_seconds"]), _number(s["peak_rss_mb"], 0), s["prompt"]]
        lines.append("| " + " | ".join(cells) + " |")
    paired = summary["paired"]
    if paired:
        lines += ["", f"## Best implicit vs best explicit (each chosen by its {paired['selected_by']}, not on these rows)",
                  "", f"`{paired['a']}` - `{paired['b']}`. {DIFFERENCES_NOTE}", "", paired["table"]]
    lines += ["", f"## Cold start: {cold_rows} test users whose next item had no interaction before the test period", ""]
    if cold_rows:
        lines += ["| system | route | " + " | ".join(f"{m} (x100)" for m in names) + " |", "|" + "---|" * (len(names) + 2)]
        lines += ["| " + " | ".join([s["name"], s["route"], *[interval_cell(s["cold_start"][m]) for m in names]]) + " |"
                  for s in summary["systems"]]
    else:
        lines.append("None in this comparison (train.test_cold_rows is 0, or the data has no such users).")
    return "\n".join(lines) + "\n"
