"""The explicit route's pieces: item codes, semantic tokens, the code retriever's ranking rules, the trie."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rec_rl.codes.build import ItemCodes, deduplicate, item_codes, quantize
from rec_rl.codes.tokens import add_code_tokens, code_text, parse_codes, strip_codes, vocabulary
from rec_rl.codes.trie import CodeTrie, prefix_allowed_tokens_fn
from rec_rl.config import CodesConfig, ConfigError, PolicyConfig, RetrieverConfig, load_config
from rec_rl.data import Catalog, load_task
from retrievers.code_index import CodeIndex
from retrievers.codes import CodeRetriever

SMALL = CodesConfig(levels=2, codebook_bits=2)  # 4 codes per level: the 10-item test catalog can train it


@pytest.fixture
def tiny_catalog(tiny_sequential: Path):
    return load_task(load_config(None, [f"data.path={tiny_sequential}"]).data).catalog


BUILD_CODES = """
import sys
import numpy as np
import torch
from rec_rl.codes.build import array_hash, item_codes
from rec_rl.config import CodesConfig, load_config
from rec_rl.data import Catalog, load_task

torch.set_num_threads(int(sys.argv[1]))
catalog = load_task(load_config(None).data).catalog
catalog = Catalog.from_items(list(zip(catalog.ids[:600], catalog.titles[:600])))
for method in ("rq", "opq_pq"):
    codes = item_codes(catalog, CodesConfig(method=method, levels=3 if method == "rq" else 4, codebook_bits=4),
                       sys.argv[2])
    np.save(f"{sys.argv[2]}/{method}.npy", codes.codes)
"""


def test_codes_are_the_same_in_other_processes_and_thread_counts(tmp_path: Path):
    """600 real titles, each build in its own process and cache, under other OpenMP and torch thread counts."""
    import os
    import subprocess
    import sys

    built = []
    for count in (1, 2):
        folder = tmp_path / f"threads-{count}"
        folder.mkdir()
        env = {**os.environ, "OMP_NUM_THREADS": str(count), "MKL_NUM_THREADS": str(count)}
        subprocess.run([sys.executable, "-c", BUILD_CODES, str(count), str(folder)], check=True, env=env,
                       capture_output=True)
        built.append({method: np.load(folder / f"{method}.npy") for method in ("rq", "opq_pq")})
    for method in ("rq", "opq_pq"):
        first, second = (b[method] for b in built)
        assert len(np.unique(first[:, :-1], axis=0)) > 16, "the codes are not all alike"
        assert np.array_equal(first, second), f"{method}: {(first != second).any(axis=1).sum()} items got other codes"


def test_codes_are_unique_cached_and_reported(tiny_catalog):
    config = CodesConfig(method="rq", levels=2, codebook_bits=2)
    codes = item_codes(tiny_catalog, config)
    assert codes.codes.shape == (len(tiny_catalog), 3)
    assert len(set(map(tuple, codes.codes.tolist()))) == len(tiny_catalog), "the last level makes every code unique"
    assert codes.codes[:, :2].max() < 4 and codes.codes.min() >= 0
    stats = codes.stats
    assert stats["unique_after_dedup"] == len(tiny_catalog) and 1 <= stats["unique_codes"] <= len(tiny_catalog)
    assert stats["largest_collision_group"] == codes.codebook_sizes[-1] == codes.codes[:, -1].max() + 1
    assert all(0 < u <= 1 for u in stats["codebook_utilisation"])
    again = item_codes(tiny_catalog, config)  # from the cache
    assert np.array_equal(again.codes, codes.codes) and again.stats == stats
    # every item's full quantizer code decodes near its own embedding, nearer than the catalog average
    errors = [np.linalg.norm(codes.reference[i] - codes.decode(tuple(codes.codes[i]))[0]) for i in range(len(codes.codes))]
    spread = np.linalg.norm(codes.reference - codes.reference.mean(0), axis=1).mean()
    assert np.mean(errors) < spread


@pytest.mark.parametrize("method", ["rq", "random"])  # opq_pq needs 384+ items: its shipped files are checked below
def test_shipped_codes_are_used_as_shipped_and_never_rebuilt(tiny_catalog, tmp_path: Path, monkeypatch, method: str):
    from rec_rl.codes import build

    config = CodesConfig(method=method, levels=2, codebook_bits=2)
    folder = build.ship_codes(tiny_catalog, config, root=tmp_path)
    built = item_codes(tiny_catalog, dataclasses.replace(config, shipped=False))
    monkeypatch.setattr(build, "SHIPPED", tmp_path)
    monkeypatch.setattr(build, "quantize", lambda *a: pytest.fail("shipped codes were rebuilt"))
    shipped = item_codes(tiny_catalog, config)
    assert shipped.stats["shipped"] and not built.stats["shipped"]
    assert np.array_equal(shipped.codes, built.codes) and np.allclose(shipped.reference, built.reference)
    assert [np.array_equal(a, b) for a, b in zip(shipped.centroids, built.centroids)] == [True, True]
    assert json.loads((folder / "manifest.json").read_text())["codes_hash"] == build.array_hash(built.codes)
    # Another catalog, or other settings, are not served the shipped codes; they build their own.
    other = Catalog.from_items(list(zip(tiny_catalog.ids, [t + " x" for t in tiny_catalog.titles])))
    assert build.shipped_codes(other, config) is None
    assert build.shipped_codes(tiny_catalog, dataclasses.replace(config, codebook_bits=3)) is None
    # A shipped file that changed is refused, naming the folder and the way out.
    codes = np.load(folder / "codes.npy")
    np.save(folder / "codes.npy", codes[::-1])
    with pytest.raises(RuntimeError, match=f"{folder.name}.*codes.shipped=false"):
        item_codes(tiny_catalog, config)


def test_the_shipped_codes_are_whole_and_name_the_embedded_catalog():
    """What rec-rl ships for the embedded catalog (rec-rl build-codes --ship): every file as its manifest
    says, one code per item, and the manifest's hash is the codes'."""
    from rec_rl.codes import build

    catalog = load_task(load_config(None).data).catalog
    folders = sorted(build.SHIPPED.glob("*/manifest.json"))
    assert {f.parent.name for f in folders} == {"rq-3x8", "opq_pq-3x8"}
    for manifest_file in folders:
        manifest = json.loads(manifest_file.read_text())
        method, shape = manifest_file.parent.name.split("-")
        config = CodesConfig(method=method, levels=int(shape.split("x")[0]), codebook_bits=int(shape.split("x")[1]))
        assert build.shipped_codes(catalog, config) == manifest_file.parent, "made for the embedded catalog"
        codes = np.load(manifest_file.parent / "codes.npy")
        assert codes.shape == (len(catalog), config.levels + 1) and len(np.unique(codes, axis=0)) == len(catalog)
        assert build.array_hash(codes) == manifest["codes_hash"]
        if method == "opq_pq":  # its reference space is the embeddings rotated by the shipped OPQ matrix
            assert np.load(manifest_file.parent / "rotation.npy").shape == (384, 384)


def test_opq_pq_codes_slices_and_small_catalog_error():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(600, 32)).astype(np.float32)
    codes, centroids, dims, rotation = quantize(embeddings, CodesConfig(method="opq_pq", levels=4, codebook_bits=3))
    assert codes.shape == (600, 4) and codes.max() < 8 and [d.stop - d.start for d in dims] == [8] * 4
    assert np.allclose(rotation @ rotation.T, np.eye(32), atol=1e-4), "OPQ's rotation is orthonormal"
    rotated = embeddings @ rotation.T
    for level, part in enumerate(dims):  # each code is its slice's nearest centroid: codes, slices, rotation agree
        distances = ((rotated[:, part][:, None, :] - centroids[level][None]) ** 2).sum(-1)
        assert np.array_equal(codes[:, level], distances.argmin(1))
    with pytest.raises(ValueError, match="at least as many items as embedding dimensions"):
        quantize(embeddings[:20], CodesConfig(method="opq_pq", levels=4, codebook_bits=2))
    with pytest.raises(ValueError, match="must divide the embedding size"):
        quantize(embeddings, CodesConfig(method="opq_pq", levels=5, codebook_bits=2))


def test_deduplicate_numbers_shared_codes_in_catalog_order():
    codes, largest = deduplicate(np.array([[1, 2], [1, 2], [0, 3], [1, 2]]))
    assert codes[:, -1].tolist() == [0, 1, 0, 2] and largest == 3


def test_token_text_round_trip_and_malformed_text():
    assert parse_codes(code_text([12, 201, 7, 0])) == [(12, 201, 7, 0)]
    assert parse_codes("Code: <a_1><b_2> then <a_3><c_9><b_4>") == [(1, 2), (3,)]  # <c_9> out of order ends it
    assert parse_codes("<b_4><c_1>") == [] and parse_codes("") == [] and parse_codes("<a_>x<a_99999999>") == []
    assert strip_codes("<a_1><b_2> halo  3") == "halo 3"
    assert vocabulary([2, 1]) == ["<a_0>", "<a_1>", "<b_0>"]


def test_semantic_tokens_initialise_save_and_reload(tiny_catalog, tmp_path: Path):
    from rec_rl.policy import load_policy

    model, tokenizer = load_policy(PolicyConfig(model="tiny"))
    codes = item_codes(tiny_catalog, SMALL)
    before = len(tokenizer)
    ids = add_code_tokens(model, tokenizer, codes.codes, codes.codebook_sizes, tiny_catalog.titles)
    assert len(ids) == sum(codes.codebook_sizes) and len(tokenizer) == before + len(ids)
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    text = code_text(codes.codes[0])
    assert tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"]) == \
        [f"<{'abc'[l]}_{c}>" for l, c in enumerate(codes.codes[0])]
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"], skip_special_tokens=True) == text

    # documented initialisation: <a_c> = m + s (m_c - m) / |m_c - m|, m_c the mean title-token embedding of the
    # items whose level-a code is c, m the level's mean of them, s the vocabulary's median row norm
    table = model.get_input_embeddings().weight.detach().numpy()
    words = table[:before]
    per_item = np.array([words[tokenizer(t, add_special_tokens=False)["input_ids"]].mean(0) for t in tiny_catalog.titles])
    m_c = np.array([per_item[codes.codes[:, 0] == c].mean(0) if (codes.codes[:, 0] == c).any() else per_item.mean(0)
                    for c in range(codes.codebook_sizes[0])])
    m, scale = m_c.mean(0), np.median(np.linalg.norm(words, axis=1))
    expected = m + scale * (m_c - m) / np.linalg.norm(m_c - m, axis=1, keepdims=True)
    level_a = table[tokenizer.convert_tokens_to_ids([f"<a_{c}>" for c in range(codes.codebook_sizes[0])])]
    assert np.allclose(level_a, expected, atol=1e-4)
    unit = (level_a - m) / np.linalg.norm(level_a - m, axis=1, keepdims=True)
    assert (unit @ unit.T)[~np.eye(len(unit), dtype=bool)].max() < 0.99, "distinct from the level's other codes"

    model.save_pretrained(tmp_path / "policy")
    tokenizer.save_pretrained(tmp_path / "policy")
    reloaded, reloaded_tokenizer = load_policy(PolicyConfig(model=str(tmp_path / "policy")))
    assert reloaded_tokenizer.convert_tokens_to_ids(vocabulary(codes.codebook_sizes)) == ids
    assert np.allclose(reloaded.get_input_embeddings().weight.detach().numpy()[ids], table[ids])
    assert add_code_tokens(reloaded, reloaded_tokenizer, codes.codes, codes.codebook_sizes, tiny_catalog.titles) == ids


def hand_made_codes() -> ItemCodes:
    """Four items in 2-d: codes chosen so that each ranking rule decides one pair."""
    codes = np.array([[0, 0, 0],   # row 0: exact target
                      [0, 0, 1],   # row 1: shares 2 levels
                      [0, 1, 0],   # row 2: shares 1 level, far from the decoded vector
                      [1, 0, 0]],  # row 3: shares nothing, but nearest the decoded vector of all others
                     np.int32)
    centroids = [np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), np.array([[0.0, 0.0], [0.0, 0.1]], np.float32)]
    reference = np.array([[1.0, 0.0], [1.0, 0.05], [-5.0, -5.0], [1.0, 0.01]], np.float32)
    return ItemCodes("rq", codes, [2, 2, 2], centroids, [slice(0, 2)] * 2, reference, {})


def test_code_retriever_ranks_exact_then_prefix_then_distance(tiny_catalog):
    from rec_rl.data.catalog import Catalog

    catalog = Catalog.from_items([(str(i), f"item {i}") for i in range(4)])
    retriever = CodeRetriever(catalog, CodesConfig(), codes=hand_made_codes())
    assert retriever.search(["<a_0><b_0><c_0>"], k=4).rows[0].tolist() == [0, 1, 2, 3]
    # a partial code: prefix (a=0) first, then within it by distance; row 3 shares no prefix
    assert retriever.search(["<a_0>"], k=4).rows[0].tolist() == [0, 1, 2, 3]
    # an invalid level code still decodes its valid levels; row 3 (a=1) leads on prefix
    assert retriever.search(["<a_1><b_7>"], k=2).rows[0].tolist()[0] == 3
    # two codes merge: each item keeps its best score
    merged = retriever.search(["<a_1><b_0><c_0> <a_0><b_1><c_0>"], k=4).rows[0].tolist()
    assert set(merged[:2]) == {2, 3}
    assert not retriever.invalid_output("<a_0><b_0><c_0>") and retriever.invalid_output("<a_0><b_0>")
    for garbage in ["", "no code", "<a_99><b_99><c_99>", "<z_1>" * 1000, "\x00\ud800", "<a_0>" * 200]:
        result = retriever.search([garbage], k=4)
        assert np.all(np.isfinite(result.scores[result.rows >= 0]))
    assert (retriever.search(["no code"], k=4).rows == -1).all()


def test_code_scores_equal_a_direct_computation_for_product_codes_with_a_skipped_level():
    from rec_rl.data.catalog import Catalog

    rng = np.random.default_rng(0)
    items, dim, levels, size = 50, 6, 3, 4
    centroids = [rng.normal(size=(size, 2)).astype(np.float32) for _ in range(levels)]
    codes = ItemCodes("opq_pq", np.column_stack([rng.integers(0, size, (items, levels)), np.zeros(items)]).astype(np.int32),
                      [size] * levels + [1], centroids, [slice(2 * i, 2 * i + 2) for i in range(levels)],
                      rng.normal(size=(items, dim)).astype(np.float32), {})
    retriever = CodeRetriever(Catalog.from_items([(str(i), f"item {i}") for i in range(items)]), CodesConfig(),
                              codes=codes)
    generated = [(1, 2, 3), (1,), (1, 9, 3), (9, 9, 2), (9, 9, 9)]  # 9 is out of range: that level is skipped
    for code, scores in zip(generated, retriever.code_scores(generated)):
        depth = min(len(code), codes.levels)
        prefix = np.cumprod(codes.codes[:, :depth] == np.asarray(code[:depth]), axis=1).sum(axis=1)
        vector, mask = codes.decode(code)
        expected = prefix.astype(np.float64)
        if mask.any():
            distance = ((codes.reference[:, mask].astype(np.float64) - vector[mask]) ** 2).sum(axis=1)
            scale = (codes.reference[:, mask].astype(np.float64) ** 2).sum(axis=1).mean()
            expected += 0.999 / (1.0 + distance / scale)
        assert np.allclose(scores, expected, atol=1e-5), code


def random_codes(rng, items: int, sizes: list[int], dim: int = 8, method: str = "rq", skewed: bool = True,
                 decay: float = 0.5, noise: float = 0.1) -> ItemCodes:
    """Random items on a few levels (skewed: some buckets large, some empty; else uniform), a de-dup level last;
    level l's centroids have scale decay**l, and items sit `noise` away from what their code decodes to."""
    levels = len(sizes)
    quantized = np.column_stack([np.minimum(rng.geometric(0.3, items) - 1, size - 1) if skewed
                                 else rng.integers(0, size, items) for size in sizes])
    codes, _ = deduplicate(quantized)
    width = dim if method == "rq" else dim // levels
    dims = [slice(0, dim)] * levels if method == "rq" else [slice(l * width, (l + 1) * width) for l in range(levels)]
    centroids = [(rng.normal(size=(size, width)) * decay ** level).astype(np.float32) for level, size in enumerate(sizes)]
    # Items sit near what their code decodes to, as quantized embeddings do: buckets are tight, pruning bites.
    reference = noise * rng.normal(size=(items, dim))
    for level, (code, block) in enumerate(zip(quantized.T, centroids)):
        reference[:, dims[level]] += block[code]
    reference = reference.astype(np.float32)
    return ItemCodes(method, codes, sizes + [int(codes[:, -1].max()) + 1], centroids, dims, reference, {})


@pytest.mark.parametrize("method", ["rq", "opq_pq"])
def test_code_index_ranks_as_the_exhaustive_search_on_random_catalogs(method):
    """CodeIndex (prefix ranges, then bucket-pruned distances) returns the exhaustive search's top k: the same
    scores rank by rank, the same rows wherever scores are not tied. Codes: items' own, partial, off the
    catalog (some level no item has, or out of range), and several merged in one output."""
    from rec_rl.data.catalog import Catalog

    rng = np.random.default_rng(1 if method == "rq" else 2)
    # The uniform 6,000-item catalog has first-level ranges of ~750 items, where bucket pruning pays.
    for items, sizes, skewed in ((7, [6, 5, 4], True), (300, [6, 5, 4], True), (2000, [6, 5, 4], True),
                                 (6000, [8, 16, 16], False)):
        codes = random_codes(rng, items, sizes, dim=8 if method == "rq" else 9, method=method, skewed=skewed,
                             decay=0.5 if skewed else 0.1, noise=0.1 if skewed else 0.01)
        retriever = CodeRetriever(Catalog.from_items([(str(i), f"item {i}") for i in range(items)]), CodesConfig(),
                                  codes=codes)
        generated = [tuple(map(int, codes.codes[row])) for row in rng.integers(0, items, 20)]
        generated += [code[:depth] for code in generated[:6] for depth in (1, 2, 3)]
        generated += [(5, 4, 3, 0), (0, 4, 3), (5,), (99, 1, 1, 0), (1, 99, 2), (99, 99, 99)]
        exhaustive = retriever.code_scores(generated)
        pruning = CodeIndex(codes, score_whole=0)  # bucket pruning wherever the range allows it
        assert skewed or (pruning.prunable[1] and pruning.prunable[2])
        pruned = []
        prune = pruning._pruned
        pruning._pruned = lambda *args: pruned.append(prune(*args)) or pruned[-1]
        for k, index, (code, full) in itertools.product((1, 5, 50, 100 if skewed else 200, min(items, 2000)),
                                                        (retriever.index, pruning),
                                                        zip(generated, exhaustive)):
            rows, scores = index.top_k(code, k)
            expected = np.lexsort((np.arange(items), -full))[:k]
            assert np.allclose(scores, full[expected], atol=1e-6), (items, k, code)
            untied = (np.abs(np.subtract.outer(full[expected], full)) <= 1e-6).sum(axis=1) == 1  # no other item near
            assert (rows[untied] == expected[untied]).all(), (items, k, code)
        if not skewed:
            assert sum(p is not None for p in pruned) >= 10, "bucket pruning answered some searches itself"
        text = " ".join(code_text(code) for code in generated[:3])
        merged = retriever.search([text], k=min(50, items))
        best = exhaustive[:3].max(axis=0)
        order = np.lexsort((np.arange(items), -best))[:min(50, items)]
        assert np.allclose(merged.scores[0], best[order], atol=1e-5)


def test_hybrid_identifiers_add_word_evidence_within_a_prefix():
    from rec_rl.data.catalog import Catalog

    catalog = Catalog.from_items([("0", "halo reach"), ("1", "gears of war"), ("2", "mario kart"), ("3", "zelda")])
    codes_only = CodeRetriever(catalog, CodesConfig(), codes=hand_made_codes())
    hybrid = CodeRetriever(catalog, CodesConfig(hybrid_weight=0.5), RetrieverConfig(engine="bm25s"), codes=hand_made_codes())
    # the prefix <a_0> holds rows 0, 1, 2, with rows 0 and 1 nearly as close: "gears of war" lifts row 1 ...
    assert codes_only.search(["<a_0> gears of war"], k=4).rows[0].tolist()[0] == 0
    assert hybrid.search(["<a_0> gears of war"], k=4).rows[0].tolist()[:2] == [1, 0]
    # ... but never above a longer shared prefix: the code keeps the lead (weight < 1)
    assert hybrid.search(["<a_0><b_0><c_0> zelda"], k=4).rows[0].tolist()[:2] == [0, 1]
    with pytest.raises(ValueError, match="hybrid_weight"):
        CodeRetriever(catalog, CodesConfig(hybrid_weight=1.5), codes=hand_made_codes())


def test_trie_allows_only_catalog_codes_and_generation_obeys_it(tiny_catalog):
    import torch

    from rec_rl.policy import load_policy
    from rec_rl.training.explicit import code_trie

    trie = CodeTrie([[10, 20], [10, 21], [11, 20]], end_ids=[0])
    assert trie.allowed(()) == [10, 11] and trie.allowed((10,)) == [20, 21] and trie.allowed((11, 20)) == [0]
    assert trie.allowed((12,)) == [0], "off the trie: only the end"
    with pytest.raises(ValueError):
        CodeTrie([[1]], end_ids=[])

    model, tokenizer = load_policy(PolicyConfig(model="tiny"))
    codes = item_codes(tiny_catalog, SMALL)
    add_code_tokens(model, tokenizer, codes.codes, codes.codebook_sizes, tiny_catalog.titles)
    trie = code_trie(tokenizer, codes.codes, model.generation_config.eos_token_id)
    inputs = tokenizer(["Code:", "a longer prompt Code:"], return_tensors="pt", padding=True)
    torch.manual_seed(0)
    output = model.generate(**inputs, do_sample=True, max_new_tokens=6, pad_token_id=tokenizer.pad_token_id,
                            prefix_allowed_tokens_fn=prefix_allowed_tokens_fn(trie, inputs["input_ids"].shape[1]))
    retriever = CodeRetriever(tiny_catalog, SMALL, codes=codes)
    texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert all(not retriever.invalid_output(t) for t in texts), texts


@pytest.mark.parametrize("input_grad", [True, False])
def test_explicit_route_trains_sft_then_grpo(tiny_sequential: Path, tmp_path: Path, input_grad: bool):
    from rec_rl.training.run import train

    run_dir = tmp_path / "run"
    config = load_config(Path(__file__).parents[1] / "configs" / "explicit_llm.yaml", [
        f"data.path={tiny_sequential}", "policy.model=tiny", "policy.lora_layers=[-1]", "codes.levels=2",
        "codes.codebook_bits=2", f"train.run_dir={run_dir}", "train.test_rows=5", "train.valid_rows=5",
        "train.eval_every=1", "train.wandb_mode=offline", "reward.k=10", "eval.ks=[1, 5]", "eval.bootstrap=50",
        f"train.sft_input_grad={str(input_grad).lower()}", "train.sft={max_steps: 3, per_device_train_batch_size: 4, logging_steps: 1, warmup_steps: 0}",
        "train.grpo={max_steps: 2, per_device_train_batch_size: 4, num_generations: 2, max_completion_length: 6, "
        "save_steps: 1, warmup_steps: 0, learning_rate: 0.01}"])
    markdown = train(config)

    assert "SFT policy" in markdown and "codes last item" in markdown
    levels = __import__("json").loads((run_dir / "results.json").read_text())["code_level_accuracy"]
    # Three levels (two quantizer levels and the de-duplicating one), each with its majority-class floor.
    assert [e["level"] for e in levels["start"]] == [e["level"] for e in levels["trained"]] == [0, 1, 2]
    assert all(0 <= e["accuracy"] <= 1 and 0 <= e["floor"] <= 1 for role in levels.values() for e in role)
    assert "Per-level code accuracy" in markdown and "(floor " in markdown
    assert len((run_dir / "sft_metrics.jsonl").read_text().splitlines()) == 3
    assert (run_dir / "sft" / "tokenizer.json").exists() and (run_dir / "curves.png").exists()
    events = [__import__("json").loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["kind"] == "train"] == [1, 2]
    assert all(e["invalid_rate"] == 0 for e in events if e["kind"] == "valid"), "constrained decoding writes valid codes"
    assert all(math.isfinite(e["reward"]) for e in events if e["kind"] == "train")

    # SFT moved the new token rows and left the pretrained vocabulary alone
    from rec_rl.policy import load_policy

    start, start_tokenizer = load_policy(PolicyConfig(model="tiny"))
    codes = item_codes(load_task(config.data).catalog, config.codes)
    ids = add_code_tokens(start, start_tokenizer, codes.codes, codes.codebook_sizes, load_task(config.data).catalog.titles)
    tuned, _ = load_policy(PolicyConfig(model=str(run_dir / "sft")))
    before, after = start.get_input_embeddings().weight.detach(), tuned.get_input_embeddings().weight.detach()
    old = min(ids)
    assert np.allclose(before[:old].numpy(), after[:old].numpy()), "pretrained rows must not move"
    assert not np.allclose(before[ids].numpy(), after[ids].numpy()), "the new token rows must train"


def test_code_accuracy_scores_each_level_against_its_majority_floor(tiny_catalog):
    import torch

    from rec_rl.policy import load_policy
    from rec_rl.training.explicit import code_accuracy, code_token_ids

    model, tokenizer = load_policy(PolicyConfig(model="tiny"))
    codes = item_codes(tiny_catalog, SMALL)
    add_code_tokens(model, tokenizer, codes.codes, codes.codebook_sizes, tiny_catalog.titles)
    ids = code_token_ids(tokenizer, codes.codes)
    vocabulary_size = len(tokenizer)

    class Scripted(torch.nn.Module):
        """Logits from a rule: `oracle` puts the most weight on the true next token, else on `fixed[level]`."""

        def __init__(self, oracle: bool, fixed=None):
            super().__init__()
            self.oracle, self.fixed = oracle, fixed

        def forward(self, input_ids, attention_mask):
            logits = torch.zeros(*input_ids.shape, vocabulary_size)
            if self.oracle:
                logits[:, :-1].scatter_(2, input_ids[:, 1:, None], 1.0)
            else:
                width = input_ids.shape[1] - ids.shape[1]
                for level, token in enumerate(self.fixed):
                    logits[:, width - 1 + level, token] = 1.0
            return type("Output", (), {"logits": logits})()

    prompts = ["Code:", "a longer prompt, Code:", "Code:"]
    targets = np.array([0, 3, 7])
    oracle = code_accuracy(Scripted(True), tokenizer, prompts, targets, codes.codes, codes.codes, batch_size=2)
    assert [e["accuracy"] for e in oracle] == [1.0] * codes.levels
    # Always the training targets' majority code at each level: the floor exactly.
    majority = [int(np.bincount(codes.codes[:, level]).argmax()) for level in range(codes.levels)]
    fixed = [int(ids[np.flatnonzero(codes.codes[:, level] == majority[level])[0], level]) for level in range(codes.levels)]
    constant = code_accuracy(Scripted(False, fixed), tokenizer, prompts, targets, codes.codes, codes.codes)
    assert [e["accuracy"] for e in constant] == [e["floor"] for e in constant]
    assert [e["floor"] for e in constant] == [float(np.mean(codes.codes[targets, level] == majority[level]))
                                              for level in range(codes.levels)]


TOKEN_PIECES = ["<a_0>", "<a_1>", "<b_0>", "<b_1>", "<c_0>", "<c_9>", "<a_", "_1>", "<d_3>", "<a_99999>", "<z_0>",
                " ", "\n", "\x00", "\ud800", "mario", "<", ">", "Code:"]
CODE_TEXT = st.lists(st.one_of(st.sampled_from(TOKEN_PIECES), st.characters()), max_size=30).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outputs=st.lists(st.one_of(CODE_TEXT, st.integers(1000, 30000).map(lambda n: "<a_0><b_1>" * n)),
                        min_size=1, max_size=5))
def test_any_output_gets_a_finite_code_reward(outputs):
    from rec_rl.data.catalog import Catalog
    from rewards import RetrievalScorer, RewardConfig, build_reward_functions

    catalog = Catalog.from_items([(str(i), f"item {i}") for i in range(4)])
    retriever = CodeRetriever(catalog, CodesConfig(), codes=hand_made_codes())
    scorer = RetrievalScorer(retriever, catalog, "plain", k=4)
    functions, _ = build_reward_functions(scorer, RewardConfig(parse="plain", k=4, recall_weight=1.0))
    columns = {"target_item_ids": [["0"]] * len(outputs), "gains": [[1.0]] * len(outputs),
               "exclude_item_ids": [[]] * len(outputs)}
    for function in functions:
        values = function(None, outputs, **columns)
        assert len(values) == len(outputs) and all(math.isfinite(v) for v in values)
    assert all(isinstance(retriever.invalid_output(o), bool) for o in outputs)


def test_build_codes_command_prints_the_stats(tiny_sequential: Path, capsys):
    import json

    from rec_rl.cli import main

    assert main(["build-codes", f"data.path={tiny_sequential}", "codes.levels=2", "codes.codebook_bits=2"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["method"] == "rq" and stats["items"] == 10 and stats["unique_after_dedup"] == 10
    assert main(["build-codes", f"data.path={tiny_sequential}", "codes.method=pq"]) == 2  # a bad value names the key
    assert "codes.method" in capsys.readouterr().err


def test_sft_scores_only_labelled_positions_with_the_same_loss_and_gradients(tmp_path: Path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer import utils
    from trl.trainer.utils import add_fused_lm_head

    from rec_rl.policy import tiny_policy
    from rec_rl.training.sft import label_positions_only

    model = AutoModelForCausalLM.from_pretrained(tiny_policy(tmp_path / "tiny"))
    add_fused_lm_head(model)
    ids = torch.randint(0, 1000, (3, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :8] = -100  # the prompt
    labels[2, 10:] = -100  # padding

    scored = []  # rows the LM head projects, per forward
    apply = utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(utils._ChunkedLogProbFunction, "apply", lambda hidden, *rest: scored.append(len(hidden)) or apply(hidden, *rest))

    def loss_and_grads():
        model.zero_grad()
        loss = model(input_ids=ids, labels=labels, fused_lm_head=True).loss
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters()]

    loss, grads = loss_and_grads()
    with label_positions_only():
        compact_loss, compact_grads = loss_and_grads()
    assert math.isclose(loss, compact_loss, rel_tol=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(grads, compact_grads))
    assert scored == [3 * 11, 4 + 4 + 2], "every shifted position, then only the labelled ones"
    assert not utils._use_triton(torch.device("cpu")), "the switch is undone afterwards"


def test_random_ids_are_the_control_of_the_same_shape_without_semantics():
    """600 real titles: random ids are as unique as rq codes, but items sharing a first level share no meaning."""
    catalog = load_task(load_config(None).data).catalog
    from rec_rl.data import Catalog

    catalog = Catalog.from_items(list(zip(catalog.ids[:600], catalog.titles[:600])))
    semantic = item_codes(catalog, CodesConfig(method="rq", levels=2, codebook_bits=4))
    random_ids = item_codes(catalog, CodesConfig(method="random", levels=2, codebook_bits=4))
    assert random_ids.codes.shape == semantic.codes.shape
    assert len(set(map(tuple, random_ids.codes.tolist()))) == len(catalog), "de-duplicated like any codes"
    assert random_ids.codes[:, :2].max() < 16
    vector, mask = random_ids.decode(tuple(random_ids.codes[0][:2]))
    assert mask.all() and not vector.any(), "a random id decodes to no vector"

    def within_first_level(codes) -> float:
        """Mean cosine similarity of item pairs that share their first code."""
        e = codes.reference
        sims = [(e[rows] @ e[rows].T)[np.triu_indices(len(rows), 1)].mean()
                for c in np.unique(codes.codes[:, 0]) if len(rows := np.flatnonzero(codes.codes[:, 0] == c)) > 1]
        return float(np.mean(sims))

    assert within_first_level(semantic) > within_first_level(random_ids) + 0.05
    retriever = CodeRetriever(catalog, CodesConfig(method="random", levels=2, codebook_bits=4), codes=random_ids)
    found = retriever.search([code_text(random_ids.codes[5])], k=600)
    assert found.rows[0, 0] == 5, "the exact id first"
    same_prefix = set(np.flatnonzero((random_ids.codes[:, :2] == random_ids.codes[5, :2]).all(axis=1))) - {5}
    assert set(found.rows[0, 1:1 + len(same_prefix)].tolist()) == same_prefix, "then the ids sharing its levels"


def test_beam_search_ranks_codes_as_their_exact_log_probabilities(tiny_catalog):
    """With beams enough for every code, constrained beam search is exhaustive: its ranking must equal each
    code's log-probability computed by a plain forward of prompt + code, for padded and unpadded prompts."""
    import torch

    from rec_rl.codes.beam import beam_search_codes
    from rec_rl.policy import load_policy
    from rec_rl.training.explicit import code_token_ids, code_trie

    torch.manual_seed(0)
    model, tokenizer = load_policy(PolicyConfig(model="tiny"))
    codes = item_codes(tiny_catalog, SMALL)
    add_code_tokens(model, tokenizer, codes.codes, codes.codebook_sizes, tiny_catalog.titles)
    with torch.no_grad():  # a random model whose code logits differ enough to rank
        model.get_output_embeddings().weight.normal_(0, 0.5)
    ids = code_token_ids(tokenizer, codes.codes)
    trie = code_trie(tokenizer, codes.codes, model.generation_config.eos_token_id)
    prompts = ["Code:", "a much longer prompt than the first one, Code:"]

    def exact(prompt: str, code) -> float:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        logits = model(input_ids=torch.tensor([prompt_ids + list(code)])).logits[0]
        logps = torch.log_softmax(logits.float(), dim=-1)
        return float(sum(logps[len(prompt_ids) - 1 + i, t] for i, t in enumerate(code)))

    ranked = beam_search_codes(model, tokenizer, prompts, trie, depth=ids.shape[1], width=len(ids), batch_size=2)
    for prompt, beams in zip(prompts, ranked):
        truth = sorted(((tuple(map(int, c)), exact(prompt, c)) for c in ids), key=lambda x: -x[1])
        assert [code for code, _ in beams] == [code for code, _ in truth]
        assert np.allclose([s for _, s in beams], [s for _, s in truth], atol=1e-4)
    narrow = beam_search_codes(model, tokenizer, prompts, trie, depth=ids.shape[1], width=3)
    catalog_codes = {tuple(map(int, c)) for c in ids}
    for prompt, beams in zip(prompts, narrow):
        assert len(beams) == 3 and all(code in catalog_codes for code, _ in beams), "only real codes, width kept"
        assert all(abs(score - exact(prompt, code)) < 1e-4 for code, score in beams)
        assert [s for _, s in beams] == sorted((s for _, s in beams), reverse=True)


def test_beam_ranking_can_push_popular_items_down(tiny_catalog, monkeypatch):
    """eval.beam_popularity_alpha: the beams are re-ranked by score - penalty of their item, after the history
    is dropped; without a penalty they keep the policy's order."""
    from types import SimpleNamespace

    from rec_rl.codes import beam as beam_module
    from rec_rl.codes.trie import CodeTrie
    from rec_rl.evaluation.policy import BeamRanking, policy_rankings

    beams = [[((0,), -1.0), ((1,), -1.5), ((2,), -3.0), ((3,), -3.5)]]  # best first, as beam search returns them
    monkeypatch.setattr(beam_module, "beam_search_codes", lambda *args, **kwargs: beams)
    rows = {"exclude_item_ids": [[tiny_catalog.ids[3]]]}  # the user's history holds the 4th code's item
    penalty = np.zeros(len(tiny_catalog))
    penalty[0] = 1.0  # the first beam's item is popular: -1.0 - 1.0 falls below -1.5

    def ranking(penalty):
        ranking = BeamRanking(CodeTrie([[code] for code in range(4)], [9]), 1, 4, {(code,): code for code in range(4)},
                              penalty)
        found, _, _ = policy_rankings(None, SimpleNamespace(decode=str), rows, ["prompt"], None, tiny_catalog, "raw",
                                      k=4, max_new_tokens=2, batch_size=1, beam=ranking)
        return found.rows[0].tolist(), found.scores[0].tolist()

    assert ranking(None) == ([0, 1, 2, -1], [-1.0, -1.5, -3.0, -np.inf])
    assert ranking(penalty) == ([1, 0, 2, -1], [-1.5, -2.0, -3.0, -np.inf])


def test_explicit_route_ranks_by_beams_when_asked(tiny_sequential: Path, tmp_path: Path):
    import json

    from rec_rl.training.run import train

    run_dir = tmp_path / "run"
    config = load_config(Path(__file__).parents[1] / "configs" / "explicit_llm.yaml", [
        f"data.path={tiny_sequential}", "policy.model=tiny", "policy.lora_layers=[-1]", "codes.levels=2",
        "codes.codebook_bits=2", f"train.run_dir={run_dir}", "train.test_rows=5", "train.valid_rows=5",
        "train.eval_every=0", "train.wandb_mode=disabled", "reward.k=10", "eval.ks=[1, 5]", "eval.bootstrap=50",
        "eval.decoding=beam", "eval.beam_width=10",
        "train.sft={max_steps: 1, per_device_train_batch_size: 4, logging_steps: 1, warmup_steps: 0}",
        "train.grpo={max_steps: 1, per_device_train_batch_size: 4, num_generations: 2, max_completion_length: 6, "
        "save_steps: 1, warmup_steps: 0, learning_rate: 0.01}"])
    train(config)
    results = json.loads((run_dir / "results.json").read_text())
    for role in ("base", "trained"):
        summary = next(s for s in results["systems"] if s["name"] == results["roles"][role])
        assert summary["decoding"] == "beam 10" and summary["invalid_rate"] == 0
        assert 1 <= summary["distinct_first_items"] <= 4
        # 10 beams name every item of the 10-item catalog; dropping each user's history leaves the rest,
        # so the target (never in the history here) is always within the top 5 or 10: recall@5 > 0 somewhere.
        assert summary["metrics"]["recall@5"]["mean"] > 0
    with pytest.raises(ConfigError, match="eval.beam_width=3 ranks fewer items"):
        train(load_config(None, ["retriever.backend=codes", "train.template=history_codes", "eval.decoding=beam",
                                 "eval.beam_width=3"]))
    with pytest.raises(ConfigError, match="eval.decoding=beam ranks item codes"):
        train(load_config(None, ["eval.decoding=beam"]))
    with pytest.raises(ConfigError, match="beam_popularity_alpha=0.5: .* needs eval.decoding=beam"):
        train(load_config(None, ["retriever.backend=codes", "train.template=history_codes",
                                 "eval.beam_popularity_alpha=0.5"]))
    with pytest.raises(ConfigError, match="re-ranks the explicit route's code beams"):
        train(load_config(None, ["eval.beam_popularity_alpha=0.5"]))


def test_eval_and_recommend_serve_the_explicit_route(tiny_sequential: Path, tmp_path: Path):
    import json

    from rec_rl.cli import main
    from rec_rl.experiments.recommend import load_recommender
    from rec_rl.training.run import train

    run_dir = tmp_path / "run"
    train(load_config(Path(__file__).parents[1] / "configs" / "explicit_llm.yaml", [
        f"data.path={tiny_sequential}", "policy.model=tiny", "policy.lora_layers=[-1]", "codes.levels=2",
        "codes.codebook_bits=2", f"train.run_dir={run_dir}", "train.test_rows=5", "train.valid_rows=5",
        "train.eval_every=0", "train.wandb_mode=disabled", "reward.k=10", "eval.ks=[1, 5]", "eval.bootstrap=50",
        "train.sft={max_steps: 1, per_device_train_batch_size: 4, logging_steps: 1, warmup_steps: 0}",
        "train.grpo={max_steps: 1, per_device_train_batch_size: 4, num_generations: 2, max_completion_length: 6, "
        "save_steps: 1, warmup_steps: 0, learning_rate: 0.01}"]))
    results = json.loads((run_dir / "results.json").read_text())
    out = tmp_path / "eval"
    assert main(["eval", "--policy", str(run_dir), "eval.max_rows=5", f"eval.output_dir={out}",
                 "eval.baselines=[popularity]"]) == 0
    assert json.loads((out / "metrics.json").read_text())["per_row"]["trained policy"] == \
        results["per_row"]["trained policy"], "the SFT policy from run/sft, the adapter from run/final, as the run"
    (answer,) = load_recommender(run_dir).recommend([["0", "1", "2"]], k=3)
    assert parse_codes(answer["code"]) and len(answer["items"]) == 3
    (run_dir / "sft").rename(tmp_path / "moved_sft")
    with pytest.raises(ConfigError, match="no sft/ folder"):
        load_recommender(run_dir)
    assert main(["eval", "--policy", str(run_dir), f"eval.output_dir={tmp_path / 'eval2'}"]) == 2
    assert not (run_dir / "sft").exists(), "evaluating a run must not train its SFT stage again"
