"""The compact semantic-ID policy (`policy.model: codes-lm`): a small decoder trained from scratch on item codes.

TIGER's generative retriever, as a policy like any other: a randomly initialised transformers
`LlamaForCausalLM` (sized by `policy.architecture`, a few million parameters by default) whose whole
vocabulary is the semantic tokens plus four specials, with a `tokenizers` word-level tokenizer saved
beside it. Its chat template drops system messages and writes `<bos>` then the user turn (the history's
codes, oldest first; template `codes_sequence`), so the same prompt, reward, trie, beam search, SFTTrainer
and GRPOTrainer code serves it and SmolLM2. Each code token is one word of the vocabulary, so the
tokenizer splits `<a_12><b_201>` into its tokens with one regex and nothing else; decoding joins them
without spaces, so a completion reads back as the code text `parse_codes` expects.

Example:
    >>> folder = build_codes_lm("/tmp/codes-lm", [4, 4, 2], {"hidden_size": 32, "num_hidden_layers": 1,
    ...                         "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 64})  # doctest: +SKIP
    >>> AutoTokenizer.from_pretrained(folder).tokenize("<a_1><b_3><c_0>")                                   # doctest: +SKIP
    ['<a_1>', '<b_3>', '<c_0>']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from rec_rl.codes.tokens import vocabulary

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
# The default size: TIGER-like depth at a width 2 CPU cores train in minutes per epoch (about 4M
# parameters with rq's 3 x 256 + de-dup codes). Any LlamaConfig field can be set by `policy.architecture`.
DEFAULT_ARCHITECTURE = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                            num_key_value_heads=4, max_position_embeddings=512)
# bos, then the user turns' text; an assistant turn (a target in SFT, never in prompts) ends with eos.
CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ message['content'] }}"
                 "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}")


def codes_tokenizer(codebook_sizes: Sequence[int]):
    """A fast tokenizer whose vocabulary is the specials then every semantic token, level by level."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [*SPECIALS, *vocabulary(codebook_sizes)]
    core = Tokenizer(models.WordLevel({word: i for i, word in enumerate(words)}, unk_token=UNK))
    # Each <...> is one word; anything between them (spaces, stray text) becomes its own piece (-> <unk>).
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                  pre_tokenizers.Split(Regex(r"<[^<>]+>"), behavior="isolated")])
    core.decoder = decoders.Fuse()  # tokens back to the text they came from, without separators
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                        unk_token=UNK, padding_side="left")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_codes_lm(folder: str | os.PathLike, codebook_sizes: Sequence[int], architecture: dict | None = None,
                   seed: int = 0) -> Path:
    """Write a random-initialised codes-lm (model, tokenizer, generation config) into `folder`; same seed, same weights."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = codes_tokenizer(codebook_sizes)
    architecture = {**DEFAULT_ARCHITECTURE, **(architecture or {})}
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    config = LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=True, **ids, **architecture)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(**ids)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

