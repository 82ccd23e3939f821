"""Paired differences between `rec-rl eval --policy` outputs scored on the same rows, Holm-adjusted.

`rec-rl table` pairs finished runs on their own results (their test or validation users); this pairs what
`rec-rl eval --policy` wrote for several runs on any other rows (e.g. the train rows GRPO is rewarded on): each
policy's per-row metrics against a reference policy's, with the project's bootstrap and Holm's adjustment over
every cell of the table. Folders must hold `metrics.json` with the same `row_ids`.

    python scripts/paired_evals.py --reference SFT runs/memo/sft_s0_train \
        --policy "graded, write" runs/memo/base_s0_train --policy "exact, write" runs/memo/exact_write_s0_train \
        --output docs/runs/explicit/grpo_rewards/train_rows
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rec_rl.evaluation.bootstrap import paired_difference
from rec_rl.evaluation.report import DIFFERENCES_NOTE, differences_table

POLICY_ROW = "trained policy"  # how `rec-rl eval --policy` names the run's policy in metrics.json


def per_row(folder: Path) -> tuple[list, dict]:
    metrics = json.loads((folder / "metrics.json").read_text())
    try:
        return metrics["row_ids"], metrics["per_row"][POLICY_ROW]
    except KeyError as missing:
        raise SystemExit(f"{folder}/metrics.json: no {missing} (not a rec-rl eval --policy output?)") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", nargs=2, metavar=("NAME", "FOLDER"), required=True)
    parser.add_argument("--policy", nargs=2, action="append", metavar=("NAME", "FOLDER"), required=True)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    reference_name, reference_folder = args.reference
    rows, reference = per_row(Path(reference_folder))
    metrics = list(reference)
    differences = {}
    for name, folder in args.policy:
        their_rows, values = per_row(Path(folder))
        if their_rows != rows:
            raise SystemExit(f"{folder}: scored other rows than {reference_folder} (row_ids differ)")
        differences[f"{name} - {reference_name}"] = {
            metric: paired_difference(values[metric], reference[metric], args.resamples) for metric in metrics}
    table = differences_table(differences, metrics)  # Holm over every cell
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "paired.json").write_text(json.dumps(
        {"reference": reference_folder, "policies": dict(args.policy), "rows": len(rows),
         "resamples": args.resamples, "differences": differences}, indent=2) + "\n")
    text = f"{len(rows)} rows, each policy against {reference_name} ({reference_folder}).\n\n{DIFFERENCES_NOTE}\n\n{table}\n"
    (args.output / "paired.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
