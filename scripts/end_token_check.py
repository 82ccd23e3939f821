"""What the end token after a code is to a policy pretrained on sequences, beside the code's own tokens.

GRPO's loss covers every completion token. With `train.rollout_end=write` a completion is the code's tokens then
the end token; in a policy pretrained on whole sequences (`train.sft_data=sequence`) that token follows only a
sequence's last item (SFTTrainer ends each text with it), so after a code it says nothing about the code. This measures, on GRPO's own rows (train rows, the run's prompts) with each row's
target code written after its prompt: the mean log-probability of each code level's token and of the end token,
and the norm of the gradient of that mean log-probability over the policy's weights: how hard one unit of
advantage pushes the weights through that position. Nothing is trained; the policy is read as saved.

    python scripts/end_token_check.py runs/explicit/sft --rows 512 --output docs/runs/explicit/grpo_rewards/end_token.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from rec_rl.config import load_config
from rec_rl.data import load_task
from rec_rl.policy import load_policy
from rec_rl.training.explicit import code_token_ids
from rec_rl.training.routes import route_of
from rec_rl.training.rows import prompt_rows
from retrievers import build_retriever


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("policy", type=Path, help="a saved policy folder (a run's sft/ or final/)")
    parser.add_argument("--config", default="configs/explicit.yaml")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    config = load_config(args.config, [f"policy.model={args.policy}"])
    task = load_task(config.data)
    retriever = build_retriever(config.retriever, task.catalog, config.codes)
    route = route_of(config)
    model, tokenizer = load_policy(config.policy)
    rows = route.rows(task.split("train", args.rows, config.seed), task, retriever, config)
    prompts = list(prompt_rows(rows, config, tokenizer)["prompt"])
    codes = code_token_ids(tokenizer, retriever.codes.codes)
    targets = codes[[task.catalog.row_of[ids[0]] for ids in rows["target_item_ids"]]]
    depth = targets.shape[1]
    names = [f"level_{level}" for level in range(depth)] + ["end"]

    model.train()  # the mode GRPO computes its loss in (the compact policy has no dropout)
    parameters = [p for p in model.parameters() if p.requires_grad]
    logps = {name: [] for name in names}
    gradients = {name: [] for name in names}
    tokenizer.padding_side = "left"
    for start in range(0, len(prompts), args.batch_size):
        encoded = tokenizer(prompts[start:start + args.batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False)
        written = torch.as_tensor(targets[start:start + args.batch_size], dtype=torch.long)
        written = torch.cat([written, torch.full((len(written), 1), tokenizer.eos_token_id)], dim=1)
        ids = torch.cat([encoded["input_ids"], written], dim=1)
        mask = torch.cat([encoded["attention_mask"], torch.ones_like(written)], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as generate numbers left-padded rows
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        width = encoded["input_ids"].shape[1]
        per_token = torch.log_softmax(logits[:, width - 1:-1].float(), dim=-1).gather(2, written[:, :, None])[:, :, 0]
        for position, name in enumerate(names):
            mean = per_token[:, position].mean()
            grads = torch.autograd.grad(mean, parameters, retain_graph=position < len(names) - 1)
            gradients[name].append(float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads))))
            logps[name].append(per_token[:, position].detach().numpy())

    result = {"policy": str(args.policy), "config": args.config, "rows": len(prompts), "split": "train",
              "mean_logprob": {name: float(np.concatenate(logps[name]).mean()) for name in names},
              "gradient_norm_of_mean_logprob": {name: float(np.mean(gradients[name])) for name in names}}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
