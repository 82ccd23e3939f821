"""Routes: what the policy writes, and everything about a run that follows from it.

The implicit route's policy writes a search query; the explicit route's writes a semantic item code. A
route says which settings it refuses, how its policy is made ready (the explicit route adds code
tokens, runs the SFT warm-up and builds the decoding trie), how rows are shown to it, what the trivial
output is (the bar every trained policy is read against), and which diagnostics it adds. The training
loop (`rec_rl.training.run`), `rec-rl compare` and the benchmarks ask the route; none of them tests
the retriever backend.

A run's route follows from what its retriever reads (`rec_rl.config.RETRIEVER_BACKENDS[...].reads`); a new
route is one class here and one entry in `ROUTES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rec_rl.codes.tokens import code_text, with_history_codes
from rec_rl.codes.trie import CodeTrie
from rec_rl.config import CODES_LM, RETRIEVER_BACKENDS, ConfigError, RunConfig
from rec_rl.data import TaskData
from rec_rl.evaluation.baselines import last_titles_query
from rec_rl.policy import load_policy
from rec_rl.prompts import get_template


@dataclass
class PreparedPolicy:
    """The policy as the loop trains it: model, tokenizer, decoding constraint and how the start is named."""

    model: object
    tokenizer: object
    constraint: CodeTrie | None = None  # only valid item codes can be written (explicit, codes.constrained)
    start_label: str = "base policy"  # the row name of the policy RL starts from
    sft_seconds: float = 0.0  # warm-up time spent in this process
    trainer_kwargs: dict = field(default_factory=dict)  # e.g. TRL's rollout_func for constrained rollouts
    sft_targets: object = None  # dataset row -> token ids of its target completion (train.grpo_sft_weight)
    # Stages before the start, scored beside it on the same rows, so a table shows what each stage bought: role ->
    # (row name, a function loading that policy), e.g. the zero-shot policy of a warm-started run.
    earlier: dict = field(default_factory=dict)


class Route:
    """What every route answers; the defaults suit a policy that writes text and needs no preparation."""

    name = ""

    def check(self, config: RunConfig) -> None:
        """Refuse settings this route cannot run, before any work starts."""

    def load_policy(self, config: RunConfig, retriever, run_dir: Path):
        """(model, tokenizer) of the policy a run starts from (`rec_rl.policy.load_policy`)."""
        return load_policy(config.policy)

    def prepare(self, config: RunConfig, task: TaskData, retriever, model, tokenizer, run_dir: Path,
                resume: bool) -> PreparedPolicy:
        """The policy made ready for this route's outputs."""
        return PreparedPolicy(model, tokenizer)

    def trains_before_rl(self, config: RunConfig) -> bool:
        """Whether `prepare` trains the policy (an SFT stage saved in `run_dir/sft`) before RL starts."""
        return False

    def rows(self, rows, task: TaskData, retriever, config: RunConfig):
        """A split's rows as this route's prompts read them."""
        return rows

    def trivial_queries(self, task: TaskData, rows, config: RunConfig, retriever) -> list[str]:
        """The bar a policy must clear: an output anyone could write from the row alone."""
        raise NotImplementedError

    def trivial_label(self, task: TaskData, config: RunConfig) -> str:
        raise NotImplementedError

    def codes(self, retriever) -> np.ndarray | None:
        """The item codes the policy writes (None: it writes text)."""
        return None

    def beam_ranking(self, config: RunConfig, tokenizer, retriever, trie: CodeTrie | None, task: TaskData):
        """`evaluation.policy.BeamRanking` for `eval.decoding=beam` (None: greedy outputs are searched)."""
        return None

    def diagnostics(self, policy, tokenizer, prompts, rows, train_rows, task: TaskData, retriever) -> list[dict] | None:
        """Route-specific measurements of a policy on validation rows (None: none)."""
        return None


class ImplicitRoute(Route):
    """The implicit route: the policy writes a search query."""

    name = "implicit"

    def check(self, config: RunConfig) -> None:
        if config.reward.rank_weight or config.train.rollout != "sample":
            raise ConfigError("train.rollout=beam and reward.rank_weight rank item codes under the code trie: they "
                              "need the explicit route (retriever.backend=codes)")
        if config.eval.decoding == "beam":
            raise ConfigError("eval.decoding=beam ranks item codes under the code trie: it needs the explicit "
                              "route (retriever.backend=codes); a query is searched with the retriever instead")
        if config.eval.beam_popularity_alpha:
            raise ConfigError("eval.beam_popularity_alpha re-ranks the explicit route's code beams: the implicit "
                              "route's queries are ranked by the retriever")
        if config.train.grpo_sft_weight:
            raise ConfigError("train.grpo_sft_weight supervises each row's target item code: the implicit route has "
                              "no target query to supervise (train.warm_start clones the trivial query before RL)")
        if config.reward.query_expansion and config.data.kind != "sequential":
            raise ConfigError(f"reward.query_expansion adds the policy's words to the user's history titles: "
                              f"data.kind={config.data.kind!r} rows have no history (expand a search query by "
                              f"rewriting it instead)")
        if config.reward.query_expansion and config.train.algorithm == "ppo":
            raise ConfigError("reward.query_expansion with train.algorithm=ppo: verl's reward rows carry no history "
                              "titles; use grpo or rloo")
        if get_template(config.train.template).writes != "query":
            raise ConfigError(f"train.template {config.train.template!r} asks for item codes: it needs a retriever "
                              f"that reads codes (retriever.backend=codes), not {config.retriever.backend!r}")
        if config.train.warm_start and config.train.sft.get("max_steps", 1) == 0:
            raise ConfigError("train.warm_start=true with train.sft.max_steps=0: the warm start would train nothing")
        if config.train.warm_start:
            from rec_rl.training.trl_args import sft_args

            sft_args(config, Path(config.train.run_dir) / "sft_checkpoints")  # train.sft's keys, checked now

    def prepare(self, config: RunConfig, task: TaskData, retriever, model, tokenizer, run_dir: Path,
                resume: bool) -> PreparedPolicy:
        """The policy as loaded, or with `train.warm_start` behaviour-cloned on the trivial query first
        (from `run_dir/sft` on resume)."""
        if not config.train.warm_start:
            return PreparedPolicy(model, tokenizer)
        import time

        from rec_rl.training.sft import clone_trivial_query, load_sft_policy

        earlier = {"zero_shot": ("zero-shot policy", lambda: self.load_policy(config, retriever, run_dir)[0])}
        if resume and (run_dir / "sft" / "config.json").is_file():
            model, tokenizer = load_sft_policy(config, run_dir, model.generation_config.eos_token_id)
            return PreparedPolicy(model, tokenizer, start_label="warm-started policy", earlier=earlier)
        started = time.perf_counter()
        model = clone_trivial_query(model, tokenizer, task, config, run_dir)
        return PreparedPolicy(model, tokenizer, start_label="warm-started policy",
                              sft_seconds=time.perf_counter() - started, earlier=earlier)

    def trains_before_rl(self, config: RunConfig) -> bool:
        return config.train.warm_start

    def trivial_queries(self, task: TaskData, rows, config: RunConfig, retriever) -> list[str]:
        """The last `history_len` titles as the query (or the user's own search query)."""
        if task.kind == "sequential":
            return [last_titles_query(titles, config.data.history_len) for titles in rows["history_titles"]]
        return list(rows["query"])

    def trivial_label(self, task: TaskData, config: RunConfig) -> str:
        if task.kind == "sequential":
            return f"{config.retriever.backend} last-{config.data.history_len} titles"
        return f"{config.retriever.backend} raw query"


class ExplicitRoute(Route):
    """The explicit route: the policy writes the next item's semantic code (`rec_rl.codes`)."""

    name = "explicit"

    def check(self, config: RunConfig) -> None:
        if get_template(config.train.template).writes != "codes":
            raise ConfigError(f"train.template {config.train.template!r} asks for a search query, but "
                              "retriever.backend=codes reads item codes: use history_codes or history_titles_codes")
        if config.eval.decoding == "beam" and not config.codes.constrained:
            raise ConfigError("eval.decoding=beam needs codes.constrained=true: the beams are the trie's codes")
        if config.reward.query_expansion:
            raise ConfigError("reward.query_expansion adds the policy's words to a text query: the codes retriever "
                              "(explicit route) searches item codes; set it false")
        if config.eval.beam_width < max(config.eval.ks):
            raise ConfigError(f"eval.beam_width={config.eval.beam_width} ranks fewer items than eval.ks needs "
                              f"({max(config.eval.ks)})")
        if config.train.algorithm == "ppo":
            raise ConfigError("train.algorithm=ppo with retriever.backend=codes: verl's PPO run has no code tokens, "
                              "SFT warm-up or code trie; train the explicit route with grpo")
        if config.codes.constrained and config.codes.hybrid_weight > 0:
            raise ConfigError("codes.hybrid_weight > 0 needs codes.constrained=false: the code trie ends every "
                              "output after its code, leaving no room for the title words hybrid identifiers add")
        if config.train.rollout == "beam" and not config.codes.constrained:
            raise ConfigError("train.rollout=beam searches the code trie: set codes.constrained=true")
        if config.reward.rank_weight and config.train.rollout != "beam":
            raise ConfigError("reward.rank_weight scores each code's place among its group's beams: set "
                              "train.rollout=beam (sampled groups have no ranks)")
        if config.codes.constrained and config.train.algorithm != "grpo":
            raise ConfigError("codes.constrained rollouts need train.algorithm=grpo (TRL's RLOOTrainer has no "
                              "rollout hook); set codes.constrained=false or use grpo")
        alpha = config.eval.beam_popularity_alpha
        if alpha < 0 or (alpha and config.eval.decoding != "beam"):
            raise ConfigError(f"eval.beam_popularity_alpha={alpha}: a weight >= 0 on the order of the beams, so it "
                              f"needs eval.decoding=beam (not {config.eval.decoding!r})")
        if config.train.grpo_sft_weight < 0 or (config.train.grpo_sft_weight and config.train.algorithm != "grpo"):
            raise ConfigError(f"train.grpo_sft_weight={config.train.grpo_sft_weight}: a weight >= 0, added to "
                              f"train.algorithm=grpo's loss (not {config.train.algorithm!r})")
        compact = config.policy.model == CODES_LM
        if compact and config.policy.lora:
            raise ConfigError("policy.model=codes-lm starts from random weights: it trains all of them; set policy.lora=false")
        if compact and not get_template(config.train.template).codes_only:
            raise ConfigError(f"policy.model=codes-lm knows no words, only item codes: train.template "
                              f"{config.train.template!r} writes titles; use codes_sequence")
        if compact and config.train.sft_data == "next_item" and config.train.sft_alignment:
            raise ConfigError("train.sft_alignment teaches title -> code, but policy.model=codes-lm reads no titles: "
                              "set train.sft_alignment=false (train.sft_data=sequence is its pretraining)")
        if config.train.sft_data == "sequence" and not get_template(config.train.template).codes_only:
            raise ConfigError(f"train.sft_data=sequence trains on the history's codes as one text, which prompts "
                              f"must continue: use train.template=codes_sequence, not {config.train.template!r}")
        for option in ("sft_holdout_target", "sft_test_history"):
            if getattr(config.train, option) and config.train.sft_data != "sequence":
                raise ConfigError(f"train.{option} changes which items the pretraining sequences hold: it needs "
                                  f"train.sft_data=sequence, not {config.train.sft_data!r}")
        if config.train.sft_test_history and config.train.sft_holdout_target:
            raise ConfigError("train.sft_test_history and train.sft_holdout_target pull a test user's sequence in "
                              "opposite directions (one item more, one item fewer): set one of them")
        if config.train.sft.get("max_steps", 1) != 0:
            from rec_rl.training.trl_args import sft_args

            sft_args(config, Path(config.train.run_dir) / "sft_checkpoints")  # train.sft's keys, checked now
            if config.train.sft.get("weight_decay", 0) and config.policy.lora:
                raise ConfigError("train.sft.weight_decay must be 0: decay would move the pretrained embedding rows too")
            if not config.policy.lora and not compact:
                raise ConfigError("the explicit route's SFT of a pretrained policy trains LoRA adapters plus the new "
                                  "token rows: set policy.lora=true (only policy.model=codes-lm trains all weights)")

    def load_policy(self, config: RunConfig, retriever, run_dir: Path):
        """The configured policy; `codes-lm` is built here, from random weights, with the run's codes as its vocabulary."""
        if config.policy.model != CODES_LM:
            return load_policy(config.policy)
        import dataclasses

        from rec_rl.codes.lm import build_codes_lm

        folder = run_dir / "init"  # kept in the run folder: the exact weights the run started from
        if not (folder / "config.json").is_file():
            build_codes_lm(folder, retriever.codes.codebook_sizes, config.policy.architecture, config.seed)
        return load_policy(dataclasses.replace(config.policy, model=str(folder)))

    def prepare(self, config: RunConfig, task: TaskData, retriever, model, tokenizer, run_dir: Path,
                resume: bool) -> PreparedPolicy:
        from rec_rl.training import explicit
        from rec_rl.training.rollout import constrained_rollout

        def validation(tokenizer, trie):
            """What SFT scores after each epoch: the run's validation users, ranked as the run's evaluations rank."""
            return explicit.sft_validation(config, task, retriever, tokenizer, trie, self)

        policy = explicit.prepare(config, task, retriever.codes, model, tokenizer, run_dir, resume, validation)
        depth = self.codes(retriever).shape[1]  # one token per code level
        kwargs = ({"rollout_func": constrained_rollout(policy.trie, policy.tokenizer, depth, config.train.rollout,
                                                       write_end=config.train.rollout_end == "write")}
                  if policy.trie is not None else {})
        target_codes, row_of = explicit.code_token_ids(policy.tokenizer, self.codes(retriever)), task.catalog.row_of
        return PreparedPolicy(policy.model, policy.tokenizer, policy.trie,
                              "SFT policy" if policy.warmed_up else "base policy", policy.sft_seconds, kwargs,
                              sft_targets=lambda row: target_codes[row_of[row["target_item_ids"][0]]].tolist())

    def trains_before_rl(self, config: RunConfig) -> bool:
        return config.train.sft.get("max_steps", 1) != 0

    def rows(self, rows, task: TaskData, retriever, config: RunConfig):
        if not get_template(config.train.template).show_codes:
            return rows
        return with_history_codes(rows, retriever.codes.codes, task.catalog)

    def trivial_queries(self, task: TaskData, rows, config: RunConfig, retriever) -> list[str]:
        """The code of the user's last item."""
        codes = self.codes(retriever)
        return [code_text(codes[task.catalog.row_of[ids[-1]]]) if len(ids) else "" for ids in rows["history_item_ids"]]

    def trivial_label(self, task: TaskData, config: RunConfig) -> str:
        return "codes last item"

    def codes(self, retriever) -> np.ndarray:
        return retriever.codes.codes

    def beam_ranking(self, config: RunConfig, tokenizer, retriever, trie: CodeTrie | None, task: TaskData):
        if config.eval.decoding != "beam":
            return None
        from rec_rl.evaluation.baselines import popularity_counts
        from rec_rl.evaluation.policy import BeamRanking
        from rec_rl.training.explicit import code_token_ids

        ids = code_token_ids(tokenizer, self.codes(retriever))
        alpha = config.eval.beam_popularity_alpha
        if alpha and "valid" not in task.known_sequences:
            raise ConfigError("eval.beam_popularity_alpha counts item interactions in users' sequences: it needs "
                              "sequential data (data.kind=sequential)")
        # Counted before every user's validation target: no validation or test target is in them.
        penalty = alpha * np.log1p(popularity_counts(task.known_sequences["valid"], task.catalog)) if alpha else None
        return BeamRanking(trie, ids.shape[1], config.eval.beam_width,
                           {tuple(map(int, code)): row for row, code in enumerate(ids)}, penalty)

    def diagnostics(self, policy, tokenizer, prompts, rows, train_rows, task: TaskData, retriever) -> list[dict]:
        """Per-level code accuracy on `rows` beside each level's majority floor (`explicit.code_accuracy`)."""
        from rec_rl.training.explicit import code_accuracy

        codes, row_of = self.codes(retriever), task.catalog.row_of
        targets = np.array([row_of[ids[0]] for ids in rows["target_item_ids"]])
        floor = codes[[row_of[ids[0]] for ids in train_rows["target_item_ids"]]]
        return code_accuracy(policy, tokenizer, list(prompts), targets, codes, floor)


ROUTES: dict[str, Route] = {"text": ImplicitRoute(), "codes": ExplicitRoute()}  # by what the retriever reads


def route_of(config: RunConfig) -> Route:
    """The route of a run: the one whose policy writes what `retriever.backend` reads."""
    return ROUTES[RETRIEVER_BACKENDS[config.retriever.backend].reads]  # load_config checked the name
