"""`rec-rl train` with `train.algorithm=ppo`: export the task, then run verl's PPO trainer on it.

verl is not a dependency of rec-rl: it pins transformers below 5.11, under the 5.20+ that TRL 1.16
and rec-rl use, so it lives in its own environment on a GPU machine (README, "Scaling up"). This
module builds the command; verl does the rest, including Ray for multi-node runs
(`train.verl={"trainer.nnodes": 2, ...}`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from rec_rl.config import ConfigError, RunConfig, to_dict
from rec_rl.data import load_task
from rec_rl.policy import resolve_model_path
from rec_rl.ppo import reward
from rec_rl.ppo.export import export_task
from rec_rl.tracking import configure_wandb

_PLAIN = re.compile(r"^[\w./~:+-]+$")


def hydra_value(value) -> str:
    """`value` written in hydra's override grammar.

    Example:
        >>> hydra_value(["console", "wandb"]), hydra_value(True), hydra_value(1e-6), hydra_value("a b")
        ('[console,wandb]', 'true', '1e-06', '"a b"')
    """
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, str) and not _PLAIN.match(value):
        return json.dumps(value)
    return str(value)


def verl_overrides(config: RunConfig, data: dict[str, Path], config_path: Path, model_path: Path) -> list[str]:
    """verl.trainer.main_ppo's command-line overrides: `train.verl` plus the paths rec-rl owns.

    The critic starts from the policy's weights (verl's usual choice); LoRA settings follow `policy.*`.
    """
    run_dir = Path(config.train.run_dir).resolve()
    owned = {
        "data.train_files": str(data["train"].resolve()),
        "data.val_files": str(data["valid"].resolve()),
        "actor_rollout_ref.model.path": str(model_path),
        "critic.model.path": str(model_path),
        "reward.custom_reward_function.path": str(Path(reward.__file__).resolve()),
        "reward.custom_reward_function.name": "compute_score",
        "+reward.custom_reward_function.reward_kwargs.config_path": str(config_path.resolve()),
        "trainer.project_name": config.train.wandb_project,
        "trainer.experiment_name": run_dir.name,
        "trainer.default_local_dir": str(run_dir / "checkpoints"),
    }
    if config.policy.lora:
        owned |= {"actor_rollout_ref.model.lora_rank": config.policy.lora_r,
                  "actor_rollout_ref.model.lora_alpha": config.policy.lora_alpha,
                  "actor_rollout_ref.model.target_modules": config.policy.lora_target_modules}
    clashes = sorted(set(config.train.verl) & {key.lstrip("+") for key in owned})
    if clashes:
        raise ConfigError(f"train.verl sets {clashes}, which rec-rl sets from the run config; remove them")
    return [f"{key}={hydra_value(value)}" for key, value in {**config.train.verl, **owned}.items()]


def run_ppo(config: RunConfig) -> str:
    """Export the task and the config into the run folder, then run verl's PPO on them; return a summary."""
    if importlib.util.find_spec("verl") is None:
        raise ConfigError("train.algorithm=ppo needs verl, which is not installed here; on a GPU machine run "
                          "scripts/setup_verl.sh (README, 'Scaling up')")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("train.algorithm=ppo runs verl's FSDP workers and vLLM rollouts, which needs a CUDA GPU; "
                          "on this machine use train.algorithm=grpo or rloo")
    run_dir = Path(config.train.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if configure_wandb(run_dir, config.train.wandb_project, config.train.wandb_mode) == "disabled":
        # Settled before config.yaml is written, so the file holds the config verl really runs.
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, verl={**config.train.verl, "trainer.logger": ["console"]}))
    config_path = run_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    data = export_task(load_task(config.data), config, run_dir / "verl_data")
    command = [sys.executable, "-m", "verl.trainer.main_ppo",
               *verl_overrides(config, data, config_path, resolve_model_path(config.policy))]
    (run_dir / "verl_command.txt").write_text(" ".join(command) + "\n")
    subprocess.run(command, check=True)
    return f"verl PPO finished; checkpoints in {run_dir / 'checkpoints'}, command in {run_dir / 'verl_command.txt'}\n"
