"""Constrained beam search over the code trie: the top-k beams are the ranked list (TIGER, MiniOneRec, LC-Rec).

The explicit route's policy writes one code per user under greedy decoding, which the code retriever
then ranks around. The field's protocol instead ranks the `width` most likely complete codes under the
trie, each naming one item. Written by hand because transformers' beam search has no per-prompt shared
prefill and re-runs the prompt for every beam: here each prompt is prefilled once and its cache copied to
its beams (as `rec_rl.training.shared_prefix` does for GRPO), then every code level is one batched step
of one token per beam, with positions counted from the attention mask as `generate` counts them. The
trie is flattened into one table per level (a node's children as token ids and as next-level nodes), so
a level's expansion is a gather and a top-k over tensors, with no Python loop over beams.

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



def level_tables(trie: CodeTrie, depth: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per level, `(tokens, nodes)` of shape (nodes at that level, most children): node i's child token ids and
    their node numbers at the next level, padded with -1. Level 0 has one node, the empty prefix.

    Example:
        >>> tables = level_tables(CodeTrie([[10, 20], [10, 21], [11, 20]], end_ids=[0]), depth=2)
        >>> tables[0][0].tolist(), tables[1][0].tolist()
        ([[10, 11]], [[20, 21], [20, -1]])
    """
    prefixes: list[tuple[int, ...]] = [()]
    tables = []
    for _ in range(depth):
        children = [[t for t in trie.allowed(prefix) if t not in trie.end_ids] for prefix in prefixes]
        width = max(1, max(map(len, children)))
        tokens = torch.full((len(prefixes), width), -1, dtype=torch.long)
        nodes = torch.full((len(prefixes), width), -1, dtype=torch.long)
        following: list[tuple[int, ...]] = []
        for i, (prefix, ids) in enumerate(zip(prefixes, children)):
            tokens[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            nodes[i, :len(ids)] = torch.arange(len(following), len(following) + len(ids))
            following += [prefix + (t,) for t in ids]
        tables.append((tokens, nodes))
        prefixes = following
    return tables


@torch.no_grad()
def beam_search_codes(model, tokenizer, prompts: Sequence[str], trie: CodeTrie, depth: int, width: int,
                      batch_size: int = 32, desc: str = "beam search",
                      tables: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> list[list[tuple[tuple[int, ...], float]]]:
    """Per prompt, up to `width` complete codes of `depth` tokens under `trie`, best first, with their scores.

    `tables` (`level_tables(trie, depth)`) can be passed to reuse them across calls.

    The beams share their prompt's keys and values without copies (tree attention): each level's `width`
    tokens are appended to the prompt's cache as one block, and a 4D attention mask lets each see its
    prompt, its own ancestors (one slot per earlier level) and itself. Copying the prompt's cache to every
    beam instead moved width x prompt keys per step, which was two thirds of the time (profiled).
    """
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    tables = [(t.to(device), n.to(device)) for t, n in (tables or level_tables(trie, depth))]
    lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lengths.__getitem__)  # similar lengths share a batch: little padding
    ranked: list[list[tuple[tuple[int, ...], float]]] = [[] for _ in prompts]
    blocked = torch.finfo(dtype).min
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        batch = order[start:start + batch_size]
        encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
        prompt_mask = encoded["attention_mask"].bool()
        out = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                    position_ids=(encoded["attention_mask"].cumsum(-1) - 1).clamp(min=0), use_cache=True)
        cache, logps = out.past_key_values, torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        rows = len(batch)
        next_position = prompt_mask.sum(-1, keepdim=True)  # (rows, 1): where the code's first token sits
        # Beams per prompt: trie node, score, code so far, and the slot of each ancestor in its level's block.
        node = torch.zeros(rows, 1, dtype=torch.long, device=device)
        score = torch.zeros(rows, 1, device=device)
        prefix = torch.zeros(rows, 1, 0, dtype=torch.long, device=device)
        ancestors = torch.zeros(rows, 1, 0, dtype=torch.long, device=device)
        blocks: list[int] = []  # width of each level's block of keys in the cache, after the prompt's
        for level, (child_tokens, child_nodes) in enumerate(tables):
            beams = node.shape[1]
            tokens, nodes = child_tokens[node.clamp(min=0)], child_nodes[node.clamp(min=0)]  # (rows, beams, children)
            valid = (tokens >= 0) & (node >= 0).unsqueeze(-1)
            candidates = torch.where(valid, score.unsqueeze(-1) + logps.view(rows, beams, -1).gather(-1, tokens.clamp(min=0)),
                                     -torch.inf).view(rows, -1)
            score, chosen = candidates.topk(min(width, candidates.shape[1]), dim=1)  # sorted, best first
            parent = chosen // tokens.shape[-1]
            picked = tokens.view(rows, -1).gather(1, chosen)
            node = torch.where(score > -torch.inf, nodes.view(rows, -1).gather(1, chosen), -1)
            prefix = torch.cat([prefix.gather(1, parent.unsqueeze(-1).expand(-1, -1, prefix.shape[-1])),
                                picked.unsqueeze(-1)], dim=-1)
            if level == depth - 1:
                break
            if level > 0:  # a level-0 beam's parent is the prompt itself, which has no slot
                ancestors = torch.cat([ancestors.gather(1, parent.unsqueeze(-1).expand(-1, -1, ancestors.shape[-1])),
                                       parent.unsqueeze(-1)], dim=-1)
            kept = picked.shape[1]
            # Keys: the padded prompt, one block per earlier level, then this level's `kept` tokens.
            seen = [prompt_mask.unsqueeze(1).expand(-1, kept, -1)]
            for earlier, block in enumerate(blocks):
                slots = torch.zeros(rows, kept, block, dtype=torch.bool, device=device)
                slots.scatter_(2, ancestors[:, :, earlier:earlier + 1], True)
                seen.append(slots)
            seen.append(torch.eye(kept, dtype=torch.bool, device=device).expand(rows, -1, -1))
            allowed = torch.cat(seen, dim=-1)
            mask = torch.where(allowed, 0.0, blocked).to(dtype).unsqueeze(1)  # (rows, 1, kept, keys)
            out = model(input_ids=picked.clamp(min=0), attention_mask=mask,  # dead beams: any token
                        position_ids=(next_position + level).expand(-1, kept), past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            blocks.append(kept)
            logps = torch.log_softmax(out.logits.float(), dim=-1).view(rows * kept, -1)
        for row, (codes, values) in enumerate(zip(prefix.tolist(), score.tolist())):
            ranked[batch[row]] = [(tuple(code), value) for code, value in zip(codes, values) if value > -float("inf")]
    model.train(was_training)
    tokenizer.padding_side = side
    return ranked

