"""TRL's config dataclasses (GRPOConfig, RLOOConfig, SFTConfig) from a `train.*` section, checked alike.

Every section is checked the same way before any work starts: a key that is not a field of the TRL class,
a number field given something else, or a key rec-rl sets itself is a `ConfigError` naming
`train.<section>.<key>`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rec_rl.config import ConfigError, RunConfig

RESERVED = ("output_dir", "use_cpu", "seed")  # set from train.run_dir, the machine and `seed`


def trl_config(config_class, section: str, values: dict, output_dir: Path, seed: int):
    """`config_class(**values)` with rec-rl's output folder, device choice and seed."""
    import torch

    known = {f.name: f for f in dataclasses.fields(config_class)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown key 'train.{section}.{key}': not a field of trl.{config_class.__name__}")
        default = known[key].default
        if isinstance(default, (int, float)) and not isinstance(default, bool) and not isinstance(value, (int, float)):
            raise ConfigError(f"train.{section}.{key} must be a number, got {value!r}")
    for key in RESERVED:
        if key in values:
            raise ConfigError(f"train.{section}.{key} is set by rec-rl (train.run_dir, the machine, seed); remove it")
    try:
        return config_class(output_dir=str(output_dir), use_cpu=not torch.cuda.is_available(), seed=seed, **values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"train.{section}: {error}") from None


def trainer_args(config: RunConfig, run_dir: Path):
    """TRL's GRPOConfig or RLOOConfig (by `train.algorithm`) from `train.grpo` / `train.rloo`, over rec-rl's defaults."""
    from trl import GRPOConfig, RLOOConfig

    algorithm = config.train.algorithm
    config_class = {"grpo": GRPOConfig, "rloo": RLOOConfig}[algorithm]
    return trl_config(config_class, algorithm, getattr(config.train, algorithm), run_dir / "checkpoints", config.seed)


def sft_args(config: RunConfig, output_dir: Path):
    """TRL's SFTConfig from `train.sft`."""
    from trl import SFTConfig

    return trl_config(SFTConfig, "sft", config.train.sft, output_dir, config.seed)
