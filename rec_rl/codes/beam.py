"""Constrained beam search over the code trie: the top-k beams are the ranked list (TIGER, MiniOneRec, LC-Rec).

The explicit route's policy writes one code per user under greedy decoding, which the code retriever
then ranks around. The field's protocol instead ranks the `width` most likely complete codes under the
trie, each naming one item. Written by hand because transformers' beam search has no per-prompt shared
prefill and re-runs the prompt for every beam: here each prompt is prefilled once and its cache copied to
its beams (as `rec_rl.training.shared_prefix` does for GRPO), then every code level is one batched step
of one token per beam, with positions counted from the attention mask as `generate` counts them.

A beam's score is the sum of the model's log-probabilities (over the whole vocabulary) of its code
tokens; the end token after a complete code is not scored (every complete code has one).

Example:
    >>> ranked = beam_search_codes(model, tokenizer, prompts, trie, depth=4, width=50)   # doctest: +SKIP
    >>> ranked[0][:2]                      # the first prompt's two best codes and their log-probabilities
    [((49153, 49410, 49670, 49920), -3.2), ((49153, 49410, 49671, 49920), -3.9)]    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from rec_rl.codes.trie import CodeTrie


@torch.no_grad()
def beam_search_codes(model, tokenizer, prompts: Sequence[str], trie: CodeTrie, depth: int, width: int,
                      batch_size: int = 32, desc: str = "beam search") -> list[list[tuple[tuple[int, ...], float]]]:
    """Per prompt, up to `width` complete codes of `depth` tokens under `trie`, best first, with their scores."""
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lengths.__getitem__)  # similar lengths share a batch: little padding
    ranked: list[list[tuple[tuple[int, ...], float]]] = [[] for _ in prompts]
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        batch = order[start:start + batch_size]
        encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
        mask = encoded["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=encoded["input_ids"], attention_mask=mask, position_ids=positions, use_cache=True)
        cache, logps = out.past_key_values, torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        # Beams as (row in batch, code prefix, score); the first level expands each prompt's one state.
        beams = [(row, (), 0.0) for row in range(len(batch))]
        for level in range(depth):
            candidates: list[list[tuple[float, int, tuple[int, ...]]]] = [[] for _ in batch]
            for index, (row, prefix, score) in enumerate(beams):
                children = [t for t in trie.allowed(prefix) if t not in trie.end_ids]
                if not children:
                    continue
                values = logps[index, children].tolist()
                candidates[row] += [(score + value, index, prefix + (child,)) for child, value in zip(children, values)]
            kept = [sorted(c, key=lambda x: -x[0])[:width] for c in candidates]
            beams = [(row, prefix, score) for row, chosen in enumerate(kept) for score, _, prefix in chosen]
            if level == depth - 1 or not beams:
                break
            parents = torch.tensor([index for chosen in kept for _, index, _ in chosen], device=device)
            cache.batch_select_indices(parents)  # each new beam continues its parent's keys and values
            mask = torch.cat([mask[parents], torch.ones(len(parents), 1, dtype=mask.dtype, device=device)], dim=1)
            tokens = torch.tensor([[prefix[-1]] for _, prefix, _ in beams], device=device)
            out = model(input_ids=tokens, attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1,
                        past_key_values=cache, use_cache=True)
            cache, logps = out.past_key_values, torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        for row, prefix, score in beams:
            ranked[batch[row]].append((prefix, score))
    model.train(was_training)
    tokenizer.padding_side = side
    return ranked
