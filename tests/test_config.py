"""Config: YAML + overrides into dataclasses; every bad key or value names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rec_rl.cli import main
from rec_rl.config import GRPO_DEFAULTS, ConfigError, RunConfig, describe, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_default_yaml_spells_out_the_defaults():
    assert load_config(ROOT / "configs" / "default.yaml") == RunConfig() == load_config()


def test_overrides_are_parsed_as_yaml():
    config = load_config(None, ["retriever.backend=dense", "eval.ks=[5, 20]", "data.path=null",
                                "retriever.k1=1", "train.grpo.beta=0.04", "train.grpo.learning_rate=5e-4",
                                "retriever.b=4E-1"])
    assert config.train.grpo["learning_rate"] == 5e-4 and config.retriever.b == 0.4
    assert config.retriever.backend == "dense" and config.eval.ks == [5, 20] and config.data.path is None
    assert config.retriever.k1 == 1.0 and isinstance(config.retriever.k1, float)
    assert config.train.grpo == {**GRPO_DEFAULTS, "beta": 0.04, "learning_rate": 5e-4}  # merged over the defaults


@pytest.mark.parametrize("override, message", [
    ("retriever.bakend=bm25", "unknown key 'retriever.bakend'"),
    ("retriever.backend=elastic", r"retriever.backend is 'elastic'; expected one of \['bm25', 'dense', 'codes'\]"),
    ("eval.max_rows=many", "eval.max_rows must be int, got 'many'"),
    ("eval.ks=[10, x]", r"eval.ks\[1\] must be int"),
    ("eval.baselines=[popularity, oracle]", r"eval.baselines is 'oracle'"),
    ("data.drop_history=3", "data.drop_history must be bool"),
    ("retriever=bm25", "retriever must be a mapping"),
    ("nonsense", "must look like key.path=value"),
    ("retriever.k1.x=3", r"override: retriever.k1 must be float, got \{'x': 3\}"),
    ("train.template=history_quary", r"train.template is 'history_quary'; expected one of \['history_query'"),
    ("data.history_len=0", r"override: data.history_len is 0; it must be at least 1"),
])
def test_bad_values_name_the_key(override: str, message: str):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_file_names_the_file(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("eval:\n  ks: [10\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("evaluation:\n  ks: [10]\n")
    with pytest.raises(ConfigError, match="typo.yaml: unknown key 'evaluation'"):
        load_config(tmp_path / "typo.yaml")
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_errors_name_the_source_of_the_bad_value(tmp_path: Path):
    (tmp_path / "run.yaml").write_text("retriever:\n  k1: fast\n")
    with pytest.raises(ConfigError, match="run.yaml: retriever.k1 must be float, got 'fast'"):
        load_config(tmp_path / "run.yaml")
    with pytest.raises(ConfigError, match="override: eval.ks\\[0\\] must be int, got 'x'"):
        load_config(tmp_path / "run.yaml", ["retriever.k1=1.2", "eval.ks=[x]"])
    with pytest.raises(ConfigError, match="override retriever.k1.x: k1 is not a section"):
        load_config(tmp_path / "run.yaml", ["retriever.k1.x=3"])


def test_every_key_is_documented():
    lines = describe()
    assert any(line.startswith("retriever.engine = 'bm25s' ['pyserini', 'bm25s']") for line in lines)
    assert all(line.split(": ", 1)[1].strip() for line in lines), "a config field lacks its help text"


def test_cli_reports_config_errors_with_exit_code_2(capsys):
    assert main(["eval", "retriever.backend=elastic"]) == 2
    assert "retriever.backend is 'elastic'" in capsys.readouterr().err


def test_cli_takes_options_between_config_and_overrides(tmp_path: Path, capsys):
    # --resume before an override: the run folder has no checkpoint, so the error proves both were read
    assert main(["train", "train.algorithm=rloo", "--resume", f"train.run_dir={tmp_path / 'run'}"]) == 2
    assert f"no complete checkpoint in {tmp_path / 'run' / 'checkpoints'}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--no-such-option"])


def test_cli_policy_path_prints_a_model_folder(capsys):
    assert main(["policy-path", "policy.model=tiny"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert main(["policy-path", "policy.model=/no/such/model"]) == 2
    assert "policy.model" in capsys.readouterr().err
