"""The `rec-rl` command: `rec-rl {train,compare,seeds,table,eval,recommend,build-codes,config,policy-path} [CONFIG.yaml] [key.path=value ...]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rec_rl.config import ConfigError, describe, load_config, to_dict
from rec_rl.data import DataError


def _split_args(values: list[str]) -> tuple[str | None, list[str]]:
    """A first argument without '=' is the config file; the rest are key=value overrides."""
    if values and "=" not in values[0]:
        return values[0], values[1:]
    return None, values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rec-rl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in [("train", "RL fine-tuning of the policy (GRPO or RLOO through TRL, PPO through verl); writes curves, "
                                 "checkpoints and a before/after table"),
                       ("compare", "the implicit route (queries) and the explicit bridge (semantic codes) against the "
                                   "baselines on the same data, policy and RL budget; writes compare.md/json and plots"),
                       ("recommend", "a trained run's top-k items for users' histories or search queries, JSONL in "
                                     "(a file or stdin) and out"),
                       ("seeds", "train one configuration over several seeds (same users for each) and report every "
                                 "metric per seed, its mean and spread, and how many seeds learned"),
                       ("table", "finished runs scored on the same users side by side, with the baselines and paired "
                                 "Holm-adjusted tests (each run against its start, the first run against the others)"),
                       ("eval", "rank the baselines on the full catalog and write metrics.json + metrics.md"),
                       ("build-codes", "quantize the catalog's item embeddings into semantic codes (the `codes` "
                                       "section; cached) and print their stats"),
                       ("config", "print the resolved config, or every key with its help (--keys)"),
                       ("policy-path", "print the local model folder of policy.model, converting it once if needed "
                                       "(what `trl vllm-serve --model` takes)")]:
        command = commands.add_parser(name, help=text)
        command.add_argument("args", nargs="*", help="[CONFIG.yaml] [key.path=value ...]")
        if name == "train":
            command.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
        if name == "build-codes":
            command.add_argument("--ship", action="store_true",
                                 help="build them on this machine and write them as the codes rec-rl ships "
                                      "(rec_rl/codes/shipped/), which every machine then uses")
        if name == "compare":
            command.add_argument("--budget", choices=["cpu", "gpu", "none"], default="cpu",
                                 help="steps and test rows for every run: cpu (2 cores, within 90 minutes), gpu (one "
                                      "40+ GB GPU), none (the config's own values); overrides win over it")
        if name == "eval":
            command.add_argument("--policy", metavar="RUN", help="a `rec-rl train` run folder: score its trained "
                                 "policy beside the baselines (overrides choose the split, rows and data)")
        if name == "recommend":
            command.add_argument("--input", default="-", help="JSONL of {user_id, history} or {query_id, query} "
                                 "(default: standard input)")
            command.add_argument("--k", type=int, default=10, help="items per user (default 10)")
        if name == "seeds":
            command.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
            command.add_argument("--output", default="runs/seeds", help="folder of seed-S runs, seeds.md and seeds.json")
            command.add_argument("--parallel", type=int, default=1, help=(
                "seeds trained at once, the machine's cores split between them (a small policy that cannot use "
                "every core, e.g. policy.model=codes-lm, finishes several seeds in the time of one)"))
        if name == "table":
            command.add_argument("--output", default="runs/table", help="folder for table.md and table.json")
        if name == "config":
            command.add_argument("--keys", action="store_true", help="list every key, its default and meaning")
    # Options may sit between the config and its overrides (`rec-rl train CONFIG --resume key=value`).
    options, extra = parser.parse_known_args(argv)
    if any(arg.startswith("-") for arg in extra):
        parser.error(f"unrecognized arguments: {' '.join(a for a in extra if a.startswith('-'))}")
    options.args += extra
    try:
        if options.command == "recommend":
            return _recommend(options)
        if options.command == "table":
            from rec_rl.experiments.runs_table import runs_table

            runs = [Path(a) for a in options.args if "=" not in a]
            print(runs_table(runs, Path(options.output), [a for a in options.args if "=" in a]))
            print(f"written to {options.output}/table.md and table.json")
            return 0
        path, overrides = _split_args(options.args)
        config = load_config(path, overrides)
        if options.command == "config":
            import yaml

            print("\n".join(describe()) if options.keys else yaml.safe_dump(to_dict(config), sort_keys=False))
        elif options.command == "train":
            from rec_rl.training.run import train

            print(train(config, resume=options.resume))
            if config.train.algorithm != "ppo":
                print(f"written to {config.train.run_dir}/results.md, curves.png and metrics.jsonl")
        elif options.command == "compare":
            from rec_rl.experiments.compare import compare

            print(compare(path, overrides, options.budget))
            print(f"written to {config.compare.output_dir}/compare.md, compare.json, rewards.png and metrics.png")
        elif options.command == "seeds":
            from rec_rl.experiments.seeds import run_seeds

            print(run_seeds(path, overrides, options.seeds, Path(options.output), options.parallel))
            print(f"written to {options.output}/seeds.md and seeds.json")
        elif options.command == "build-codes":
            import json
            import time

            from rec_rl.codes import item_codes
            from rec_rl.codes.build import array_hash
            from rec_rl.data import load_task

            started = time.perf_counter()
            catalog = load_task(config.data).catalog
            if options.ship:
                from rec_rl.codes.build import ship_codes

                print(f"shipped codes written to {ship_codes(catalog, config.codes, config.retriever.cache_dir)}")
            codes = item_codes(catalog, config.codes, config.retriever.cache_dir)
            print(json.dumps({"method": config.codes.method, "codes_hash": array_hash(codes.codes), **codes.stats,
                              "wall_seconds": round(time.perf_counter() - started, 1)}, indent=2))
        elif options.command == "policy-path":
            from rec_rl.policy import resolve_model_path

            print(resolve_model_path(config.policy))
        elif options.command == "eval" and options.policy:
            if path:
                raise ConfigError(f"rec-rl eval --policy {options.policy}: the run's own config.yaml is used; "
                                  f"drop {path!r} and pass overrides only")
            from rec_rl.experiments.policy_eval import evaluate_run

            print(evaluate_run(options.policy, overrides))
            print(f"written to {load_config(Path(options.policy) / 'config.yaml', overrides).eval.output_dir}/"
                  "metrics.md, metrics.json and completions.jsonl")
        elif options.command == "eval":
            from rec_rl.evaluation.run import run_eval

            print(run_eval(config))
            print(f"written to {config.eval.output_dir}/metrics.json and metrics.md")
    except (ConfigError, DataError) as error:
        print(f"rec-rl: error: {error}", file=sys.stderr)
        return 2
    return 0


def _recommend(options) -> int:
    """`rec-rl recommend RUN [key=value ...]`: JSONL requests in, JSONL recommendations out."""
    from rec_rl.experiments.recommend import load_recommender, recommend_lines

    if not options.args or "=" in options.args[0]:
        raise ConfigError("rec-rl recommend needs the run folder first: rec-rl recommend RUN [key=value ...]")
    run, overrides = options.args[0], options.args[1:]
    recommender = load_recommender(run, overrides)
    if options.input == "-":
        answered = recommend_lines(recommender, sys.stdin, options.k, sys.stdout)
    else:
        with open(options.input, encoding="utf-8") as handle:
            answered = recommend_lines(recommender, handle, options.k, sys.stdout, source=options.input)
    print(f"answered {answered} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
