"""Training runs in child processes: one `rec-rl train` per run folder, reused when finished, resumed when cut.

Shared by `rec-rl compare` (one run per route) and `rec-rl seeds` (one run per seed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from rec_rl.config import ConfigError, load_config, to_dict


def run_training(name: str, config_path: str | None, overrides: list[str], folder: Path, group: str) -> dict:
    """`rec-rl train` in a child process (log in `folder/train.log`); its wall time and peak memory.

    A finished run in `folder` is reused when its config matches; a checkpointed one is resumed;
    a run that stopped before its first checkpoint is started again.
    """
    from rec_rl.training.run import last_complete_checkpoint

    record = folder / "compare_run.json"
    expected = to_dict(load_config(config_path, overrides))
    if (folder / "results.json").exists() and record.exists():
        saved = yaml.safe_load((folder / "config.yaml").read_text())
        if saved != expected:
            changed = sorted(_changed_keys(saved, expected))
            raise ConfigError(f"{folder} holds a finished run made with another config ({', '.join(changed[:5])}); "
                              "remove it or set compare.output_dir")
        print(f"{name}: reusing the finished run in {folder}")
        return json.loads(record.read_text())
    command = [sys.executable, "-m", "rec_rl.cli", "train", *([config_path] if config_path else []), *overrides]
    if last_complete_checkpoint(folder / "checkpoints"):
        command.append("--resume")
        print(f"{name}: resuming from its last checkpoint in {folder}")
    elif folder.exists():
        print(f"{name}: {folder} holds a run that stopped before its first checkpoint; starting it again")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_RUN_GROUP": group, "WANDB_NAME": name, "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    print(f"{name}: training (log: {folder / 'train.log'})", flush=True)
    with open(folder / "train.log", "ab") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        tail = (folder / "train.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"run {name} failed (exit {os.waitstatus_to_exitcode(status)}); "
                           f"the end of {folder / 'train.log'}:\n{tail}")
    facts = {"wall_seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}  # Linux reports KiB
    record.write_text(json.dumps(facts))
    print(f"{name}: done in {seconds / 60:.1f} min, peak {facts['peak_rss_mb']:,.0f} MB", flush=True)
    return facts


def _changed_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            keys += _changed_keys(left, right, f"{prefix}{key}.")
        elif left != right:
            keys.append(f"{prefix}{key}")
    return keys
