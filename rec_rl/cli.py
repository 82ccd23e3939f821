"""The `rec-rl` command: `rec-rl eval [CONFIG] [key=value ...]`, `rec-rl config [CONFIG] [key=value ...]`."""

from __future__ import annotations

import argparse
import sys

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
    for name, text in [("eval", "rank the baselines on the full catalog and write metrics.json + metrics.md"),
                       ("config", "print the resolved config, or every key with its help (--keys)")]:
        command = commands.add_parser(name, help=text)
        command.add_argument("args", nargs="*", help="[CONFIG.yaml] [key.path=value ...]")
        if name == "config":
            command.add_argument("--keys", action="store_true", help="list every key, its default and meaning")
    options = parser.parse_args(argv)
    try:
        path, overrides = _split_args(options.args)
        config = load_config(path, overrides)
        if options.command == "config":
            import yaml

            print("\n".join(describe()) if options.keys else yaml.safe_dump(to_dict(config), sort_keys=False))
        elif options.command == "eval":
            from rec_rl.evaluation.run import run_eval

            print(run_eval(config))
            print(f"written to {config.eval.output_dir}/metrics.json and metrics.md")
    except (ConfigError, DataError) as error:
        print(f"rec-rl: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
