"""The explicit route's policy: semantic tokens added, the SFT warm-up run, the decoding trie built.

`rec-rl train` with `retriever.backend=codes` runs the same loop as the implicit route; this module
prepares what differs before it starts (see `rec_rl.codes` and `rec_rl.training.sft`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rec_rl.codes.tokens import add_code_tokens, code_token
from rec_rl.codes.trie import CodeTrie
from rec_rl.config import RunConfig
from rec_rl.data import TaskData
from rec_rl.policy import eos_ids


@dataclass
class ExplicitPolicy:
    model: object
    tokenizer: object
    trie: CodeTrie | None  # None when codes.constrained is off
    warmed_up: bool  # the SFT warm-up ran (now or before a resume)
    sft_seconds: float  # wall time of the warm-up in this process (0 when loaded from a resume)


def code_token_ids(tokenizer, codes: np.ndarray) -> np.ndarray:
    """Every item's code as token ids, (n_items, levels)."""
    levels = codes.shape[1]
    lookup = [np.array(tokenizer.convert_tokens_to_ids([code_token(level, c) for c in range(codes[:, level].max() + 1)]))
              for level in range(levels)]
    return np.column_stack([lookup[level][codes[:, level]] for level in range(levels)])


def code_accuracy(model, tokenizer, prompts: list[str], targets: np.ndarray, codes: np.ndarray,
                  floor_codes: np.ndarray, batch_size: int = 32) -> list[dict]:
    """Per code level: the teacher-forced accuracy and loss of the policy on `targets`, beside that level's floors.

    `prompts` are rendered prompts (ending where the code starts), `targets` the catalog rows of their next
    items. At level l the policy sees the prompt and the target's true levels < l and its prediction is the
    most likely token among level l's code tokens; its loss is the negative log-probability of the true
    token, normalised over level l's tokens. The floors are what knowing only the training targets' codes at
    that level (`floor_codes`, a predictor built without the evaluated rows) gives: the majority code's
    accuracy, and the cross-entropy of the level's marginal code frequencies (add-one smoothed).
    Example output: `[{"level": 0, "accuracy": 0.12, "floor": 0.03, "loss": 4.1, "floor_loss": 4.9}, ...]`.
    """
    import torch

    ids = code_token_ids(tokenizer, codes)
    levels = ids.shape[1]
    options = [np.unique(ids[:, level]) for level in range(levels)]  # each level's token ids
    majority = [np.bincount(floor_codes[:, level]).argmax() for level in range(levels)]
    hits = np.zeros((len(prompts), levels), dtype=bool)
    losses = np.zeros((len(prompts), levels))
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = list(range(start, min(start + batch_size, len(prompts))))
            encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
            code_ids = torch.as_tensor(ids[targets[batch]], dtype=encoded["input_ids"].dtype)
            input_ids = torch.cat([encoded["input_ids"], code_ids], dim=1)
            mask = torch.cat([encoded["attention_mask"], torch.ones_like(code_ids)], dim=1)
            logits = model(input_ids=input_ids, attention_mask=mask).logits
            width = encoded["input_ids"].shape[1]
            for level in range(levels):
                scores = logits[:, width - 1 + level, torch.as_tensor(options[level])].float()
                predicted = options[level][scores.argmax(dim=1).numpy()]
                hits[batch, level] = predicted == ids[targets[batch], level]
                true = torch.as_tensor(np.searchsorted(options[level], ids[targets[batch], level]))
                losses[batch, level] = -torch.log_softmax(scores, dim=1).gather(1, true[:, None])[:, 0].numpy()
    model.train(was_training)
    tokenizer.padding_side = side

    def marginal_loss(level: int) -> float:
        used = np.unique(codes[:, level])  # the level's codes, in the order of `options[level]`
        counts = np.bincount(floor_codes[:, level], minlength=used.max() + 1)[used] + 1.0
        return float(-np.log(counts[np.searchsorted(used, codes[targets, level])] / counts.sum()).mean())

    return [{"level": level, "accuracy": float(hits[:, level].mean()),
             "floor": float(np.mean(codes[targets, level] == majority[level])),
             "loss": float(losses[:, level].mean()), "floor_loss": marginal_loss(level)} for level in range(levels)]


def code_trie(tokenizer, codes: np.ndarray, eos) -> CodeTrie:
    """The trie of every item's token-id code, ending at `eos` (the generation config's id or ids)."""
    return CodeTrie(code_token_ids(tokenizer, codes).tolist(), eos_ids(eos))


def sft_validation(config: RunConfig, task: TaskData, retriever, tokenizer, trie: CodeTrie | None, route):
    """`validate(model) -> metrics` for SFT's epochs: NDCG/Recall on the run's validation users (the
    `train.valid_rows` sample of the valid split, ranked by `eval.decoding` as the run's evaluations are), each
    level's accuracy and loss with its floors, and popularity and transitions on the same users as
    `floor/` and `bar/` (computed once)."""
    from rec_rl.evaluation.policy import evaluate_policy
    from rec_rl.evaluation.run import score_baselines
    from rec_rl.training.rows import parse_mode, prompt_rows

    rows = route.rows(task.split("valid", config.train.valid_rows, config.data.split_seed), task, retriever, config)
    prompts = list(prompt_rows(rows, config, tokenizer)["prompt"])
    codes, row_of = retriever.codes.codes, task.catalog.row_of
    targets = np.array([row_of[ids[0]] for ids in rows["target_item_ids"]])
    floor_codes = codes[[row_of[ids[0]] for ids in task.split("train")["target_item_ids"]]]
    settings = dataclasses.replace(config, eval=dataclasses.replace(config.eval, split="valid",
                                                                    baselines=["popularity", "transitions"]))
    floors = {f"{'floor' if baseline.name == 'popularity' else 'bar'}/{name}": float(values.mean())
              for baseline in score_baselines(settings, task, rows) for name, values in baseline.per_row.items()}
    beam = route.beam_ranking(config, tokenizer, retriever, trie, task)

    def validate(model) -> dict:
        result, _ = evaluate_policy("valid", model, tokenizer, rows, prompts, retriever, task.catalog, parse_mode(config),
                                    config.eval.ks, max_new_tokens=codes.shape[1] + 1,
                                    batch_size=config.train.eval_batch_size, constraint=trie, beam=beam,
                                    recall_min_gain=task.recall_min_gain)
        levels = code_accuracy(model, tokenizer, prompts, targets, codes, floor_codes, config.train.eval_batch_size)
        return ({name: float(v.mean()) for name, v in result.per_row.items()} | floors
                | {"distinct_first_items": result.info["distinct_first_items"]}
                | {f"level_{key}/{e['level']}": e[key] for e in levels for key in ("accuracy", "floor", "loss", "floor_loss")})

    return validate


def prepare(config: RunConfig, task: TaskData, codes, model, tokenizer, run_dir: Path, resume: bool,
            validation=None) -> ExplicitPolicy:
    """The policy for the explicit route: from `run_dir/sft` on resume, else with tokens added and warmed up.

    `validation(tokenizer, trie) -> validate(model)` makes what SFT scores its epochs by (`sft_validation`).
    """
    from rec_rl.training.sft import load_sft_policy, warm_up

    warmed_up, sft_seconds = False, 0.0
    eos = model.generation_config.eos_token_id
    if resume and (run_dir / "sft").exists():
        model, tokenizer = load_sft_policy(config, run_dir, eos)  # the caller's stop ids (line ends) carry over
        trie = code_trie(tokenizer, codes.codes, eos) if config.codes.constrained else None
        warmed_up = True
    else:
        token_ids = add_code_tokens(model, tokenizer, codes.codes, codes.codebook_sizes, task.catalog.titles)
        trie = code_trie(tokenizer, codes.codes, eos) if config.codes.constrained else None
        if config.train.sft.get("max_steps", 1) != 0:
            validate = validation(tokenizer, trie) if validation and config.train.sft_data == "sequence" else None
            started = time.perf_counter()
            model = warm_up(model, tokenizer, task, codes, token_ids, config, run_dir, validate)
            warmed_up, sft_seconds = True, time.perf_counter() - started
    return ExplicitPolicy(model, tokenizer, trie, warmed_up, sft_seconds)
