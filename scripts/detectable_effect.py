"""How many test users a seed's "trained beats its start" would need: power of the paired interval, per seed.

The default run's bar (trained - start NDCG@10, 95% paired interval above 0, in 3 of 3 seeds) is judged on 320
test users. This asks whether a run failed it because RL changed too little or because 320 users cannot show
what it changed. For each committed run (`results.json` with `per_row` values and `roles`), it takes that seed's
per-user differences trained - start as the effect distribution, draws `--simulations` test sets of N users from
it (with replacement), scores each with the project's own bootstrap (`rec_rl.evaluation.bootstrap`, the interval
every results table uses) and reports the share whose interval lies above 0: the power at N users. The chance
that all seeds of one configuration pass at N is the product over its seeds. The assumption is that new users
behave like the ones scored; the distributions come from rows already scored, so this measures nothing new
about the policies, only what sample size their measured effects would need.

    python scripts/detectable_effect.py --output docs/runs/power \
        --config default docs/runs/default --config steps60 docs/runs/steps60_default ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rec_rl.evaluation.bootstrap import bootstrap_interval


def seed_differences(results_path: Path, metric: str) -> np.ndarray:
    """Per-user `metric` of the trained policy minus the policy RL started from, as one run scored them."""
    results = json.loads(results_path.read_text())
    try:
        roles, per_row = results["roles"], results["per_row"]
        trained = np.asarray(per_row[roles["trained"]][metric], dtype=np.float64)
        start = np.asarray(per_row[roles["base"]][metric], dtype=np.float64)
    except KeyError as missing:
        raise SystemExit(f"{results_path}: no {missing} in its roles / per_row (metric {metric!r})") from None
    return trained - start


def power(differences: np.ndarray, users: int, simulations: int, resamples: int, rng: np.random.Generator) -> float:
    """Share of simulated `users`-user test sets whose paired bootstrap interval of the mean lies above 0."""
    if not np.any(differences):
        return 0.0  # a policy identical to its start on every user: no sample size shows a difference
    above = 0
    for _ in range(simulations):
        sample = differences[rng.integers(0, len(differences), users)]
        above += bootstrap_interval(sample, resamples, seed=int(rng.integers(2**31)))[1] > 0
    return above / simulations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", nargs=2, action="append", metavar=("NAME", "FOLDER"), required=True,
                        help="a configuration's name and its folder of seed-*/results.json (repeatable)")
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--users", type=int, nargs="+", default=[320, 1000, 3000, 18000])
    parser.add_argument("--simulations", type=int, default=200)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    rows = []
    for name, folder in args.config:
        paths = sorted(Path(folder).glob("seed-*/results.json"))
        if not paths:
            raise SystemExit(f"{folder}: no seed-*/results.json")
        for path in tqdm(paths, desc=name):
            differences = seed_differences(path, args.metric)
            rows.append({
                "config": name, "seed_run": str(path.parent), "users_scored": len(differences),
                "mean": float(differences.mean()), "changed_share": float(np.mean(differences != 0)),
                "better": int(np.sum(differences > 0)), "worse": int(np.sum(differences < 0)),
                "power": {str(n): power(differences, n, args.simulations, args.resamples, rng) for n in args.users},
            })
    configs = {}
    for name, _ in args.config:
        seeds = [row for row in rows if row["config"] == name]
        configs[name] = {str(n): float(np.prod([row["power"][str(n)] for row in seeds])) for n in args.users}

    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "power.json").write_text(json.dumps(
        {"metric": args.metric, "simulations": args.simulations, "resamples": args.resamples, "seed": args.seed,
         "seeds": rows, "all_seeds_pass": configs}, indent=2) + "\n")
    sizes = " | ".join(f"{n:,} users" for n in args.users)
    lines = [f"Power of 'trained - start {args.metric}, 95% paired interval above 0', per seed, from its own scored "
             f"users ({args.simulations} simulated test sets per cell, {args.resamples} bootstrap resamples each).",
             "", f"| config | seed run | users scored | mean x100 | users better / worse | {sizes} |",
             "|---|---|---|---|---|" + "---|" * len(args.users)]
    for row in rows:
        cells = " | ".join(f"{row['power'][str(n)]:.2f}" for n in args.users)
        lines.append(f"| {row['config']} | {row['seed_run']} | {row['users_scored']} | {row['mean'] * 100:+.2f} | "
                     f"{row['better']} / {row['worse']} | {cells} |")
    lines += ["", f"| config | all seeds pass at {sizes} |", "|---|" + "---|" * len(args.users)]
    lines += [f"| {name} | " + " | ".join(f"{configs[name][str(n)]:.2f}" for n in args.users) + " |" for name in configs]
    (args.output / "power.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
