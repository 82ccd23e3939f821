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
from dataclasses import dataclass
from pathlib import Path


from rec_rl.config import ConfigError, config_hash, load_config, to_dict


@dataclass
class ChildRun:
    """What a finished child process did: its exit code, wall time, peak memory and (if captured) its output."""

    exit_code: int
    seconds: float
    peak_rss_mb: float  # of the child alone (its own rusage), not of this process
    output: str | None = None


def run_child(command: list[str], env: dict | None = None, stdout=None, stderr=None, capture: bool = False) -> ChildRun:
    """Run `command` to its end; `capture` returns its standard output as text, else it goes to `stdout`."""
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE if capture else stdout, stderr=stderr,
                             text=capture)
    output = child.stdout.read() if capture else None
    _, status, usage = os.wait4(child.pid, 0)
    return ChildRun(os.waitstatus_to_exitcode(status), time.perf_counter() - started,
                    usage.ru_maxrss / 1024, output)  # Linux reports KiB


def run_training(name: str, config_path: str | None, overrides: list[str], folder: Path, group: str,
                 threads: int | None = None) -> dict:
    """`rec-rl train` in a child process (log in `folder/train.log`); its wall time and peak memory.

    `threads` pins the child's math libraries to that many threads (runs side by side); None keeps ours.

    A finished run in `folder` is reused when it trained and measured the same thing: the same
    `config_hash` (settings less output folders and logging) and seed; a checkpointed one is resumed;
    a run that stopped before its first checkpoint is started again.
    """
    from rec_rl.training.checkpoints import last_complete_checkpoint

    record = folder / "compare_run.json"
    wanted = load_config(config_path, overrides)
    if (folder / "results.json").exists() and record.exists():
        # Read through today's schema: a key added since the run was made counts at its default.
        made = load_config(folder / "config.yaml")
        if (config_hash(made), made.seed) != (config_hash(wanted), wanted.seed):
            changed = sorted(_changed_keys(to_dict(made), to_dict(wanted)))
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
    env = {**os.environ, "WANDB_RUN_GROUP": group, "WANDB_NAME": name, "TOKENIZERS_PARALLELISM": "false",
           **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {})}
    print(f"{name}: training (log: {folder / 'train.log'})", flush=True)
    with open(folder / "train.log", "ab") as log:
        child = run_child(command, env, stdout=log, stderr=subprocess.STDOUT)
    if child.exit_code != 0:
        tail = (folder / "train.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"run {name} failed (exit {child.exit_code}); the end of {folder / 'train.log'}:\n{tail}")
    facts = {"wall_seconds": child.seconds, "peak_rss_mb": child.peak_rss_mb}
    record.write_text(json.dumps(facts))
    print(f"{name}: done in {child.seconds / 60:.1f} min, peak {facts['peak_rss_mb']:,.0f} MB", flush=True)
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
