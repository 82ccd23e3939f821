"""Retrievers: the Lucene analyzer copy, BM25 engine agreement, search behaviour and the index cache."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rec_rl.codes.tokens import code_text
from rec_rl.config import RetrieverConfig
from rec_rl.data.catalog import Catalog, read_catalog
from retrievers import Retriever, SearchResult, build_retriever
from retrievers import analysis
from retrievers.bm25 import lucene_length, top_rows
from rec_rl.index_cache import MANIFEST, cached_index, entry_path, verify

EMBEDDED_ITEMS = Path(__file__).parents[1] / "rec_rl" / "data" / "embedded" / "amazon_games_seq" / "items.jsonl.gz"

GAMES = [
    ("g0", "Super Mario Odyssey - Nintendo Switch"),
    ("g1", "The Legend of Zelda: Breath of the Wild"),
    ("g2", "Mario Kart 8 Deluxe"),
    ("g3", "Halo 5: Guardians - Xbox One"),
    ("g4", "Gears of War 4 - Xbox One"),
    ("g5", "Forza Horizon 3 - Xbox One"),
    ("g6", "FIFA 18 - PlayStation 4"),
    ("g7", "Uncharted 4: A Thief's End - PlayStation 4"),
    ("g8", "The Last of Us Remastered - PlayStation 4"),
    ("g9", "Splatoon 2 - Nintendo Switch"),
    ("g10", "Mario Party 10 - Wii U"),
    ("g11", "Mario Party 10 - Wii U"),  # a duplicate text: ties must come out in row order
]

MALFORMED_QUERIES = [
    "",
    "   \t\n",
    "the of and to",  # stop words only
    "!!! ??? ...",
    'AND ( : * " OR title:mario^3 [a TO z] ~2 \\',  # Lucene query syntax is plain text here
    "\ud800 mario \udfff",  # lone surrogates
    "mario\x00kart\x00",  # NUL bytes
    "x" * 100_000,  # one 100k-character word
    "mario " * 20_000,  # 20k words, one term
    " ".join(f"word{i}" for i in range(5_000)),  # far more distinct terms than Lucene's 1024 clauses
    "-".join(["a1b"] * 30_000),  # 30k tokens without whitespace
    "🎮👍🏽 日本語 ภาษาไทย עברית",
]

BACKENDS = {
    "pyserini": RetrieverConfig(backend="bm25", engine="pyserini"),
    "bm25s": RetrieverConfig(backend="bm25", engine="bm25s"),
    "dense": RetrieverConfig(backend="dense"),
}


@pytest.fixture(scope="module")
def games() -> Catalog:
    return Catalog.from_items(GAMES)


@pytest.fixture(scope="module")
def retrievers(games, tmp_path_factory) -> dict[str, Retriever]:
    """One retriever per backend over the tiny catalog, sharing one cache folder."""
    cache = str(tmp_path_factory.mktemp("retrievers-cache"))
    return {name: build_retriever(dataclasses.replace(config, cache_dir=cache), games)
            for name, config in BACKENDS.items()}


@pytest.fixture(scope="module")
def first_2000() -> Catalog:
    full = read_catalog(EMBEDDED_ITEMS)
    return Catalog.from_items(list(zip(full.ids, full.titles))[:2000])


# --- the analyzer ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, terms", [
    ("The Legend of Zelda: Link's Awakening (3DS)", ["legend", "zelda", "link", "awaken", "3d"]),
    ("Final Fantasy Anthology - PlayStation", ["final", "fantasi", "antholog", "playstat"]),
    ("v1.5 U.S.A. 1,000 a:b _x_ rock'n'roll", ["v1.5", "u.s.a", "1,000", "a:b", "_x_", "rock'n'rol"]),
    ("Snark Busters: All Revved Up", ["snark", "buster", "all", "rev", "up"]),
    ("漢字 カタカナ 한국어 👍🏽", ["漢", "字", "カタカナ", "한국어", "👍🏽"]),
    ("ΣΊΣΥΦΟΣ İstanbul", ["σίσυφοσ", "istanbul"]),
    ("it's a game", ["game"]),
])
def test_analyze_examples(text, terms):
    assert analysis.analyze(text) == terms


def test_stemmer_keeps_lucenes_departures_from_the_1980_algorithm():
    assert analysis.analyze("anthology incredibly revved ms us games") == \
        ["antholog", "incred", "rev", "ms", "us", "game"]


def test_analyzer_matches_lucene(first_2000):
    """The Python analyzer gives exactly Lucene's terms on catalog titles and tricky text."""
    from retrievers.java import start_jvm

    start_jvm()
    from jnius import autoclass

    analyze_in_java = autoclass("io.anserini.analysis.AnalyzerUtils").analyze
    analyzer = autoclass("io.anserini.analysis.DefaultEnglishAnalyzer").newDefaultInstance()
    texts = first_2000.texts + [title for _, title in GAMES] + [
        "café naïve cafe\u0301 ＡＢＣ１２３ 漢字テスト ひらがな 한국어 ภาษาไทย שלום צה\"ל α-β ß",
        "soft\u00adhyphen zw\u200djoin e.g. 3.5mm C++ C# .NET node.js a@b.com http://x.org/p?q=1",
        "x" * 600, "Ⅷ ① x² ١٢ العربية हिन्दी ❤ © 🇺🇸",
    ]
    mismatches = [(text, list(analyze_in_java(analyzer, text).toArray()), analysis.analyze(text))
                  for text in texts]
    assert [m for m in mismatches if m[1] != m[2]] == []


def test_words_and_truncation():
    assert analysis.truncate_words("a b, c d", 3) == "a b, c"
    assert analysis.truncate_words("short", 3) == "short"
    assert [len(analysis.words("x" * 600)), analysis.words("x" * 600)[-1]] == [3, (510, 600)]
    with pytest.raises(ValueError, match="max_query_terms"):
        analysis.check_query_terms(2000)


def test_lucene_length_encoding():
    """Lucene's one-byte norm: exact below 40, then 4 significant bits (SmallFloat.intToByte4)."""
    lengths = lucene_length(np.arange(1, 200))
    assert lengths[:39].tolist() == list(range(1, 40))
    assert lengths[39:44].tolist() == [40, 40, 42, 42, 44]
    assert np.all(np.diff(lengths) >= 0) and np.all(lengths <= np.arange(1, 200))


def test_top_rows_orders_ties_by_row():
    rows, scores = top_rows(np.array([1.0, 3.0, 1.0, 0.0, 1.0, 2.0], np.float32), 4)
    assert rows.tolist() == [1, 5, 0, 2] and scores.tolist() == [3.0, 2.0, 1.0, 1.0]


# --- BM25 engine agreement ----------------------------------------------------------------

def test_bm25_engines_agree(first_2000, tmp_path):
    """Same top-10 rows and scores (to 1e-4) from Lucene and bm25s on title-based queries:
    titles, their first one to three words, and pairs of titles (like history queries).

    A query counts when it has no near-ties: scores at ranks 1..11 differ by more than 1e-4 in both
    engines (Anserini rounds scores to 4 decimals). Ties are ordered by row in both engines, so all
    queries are compared too.
    """
    config = RetrieverConfig(backend="bm25", cache_dir=str(tmp_path))
    lucene = build_retriever(dataclasses.replace(config, engine="pyserini"), first_2000)
    numpy_bm25 = build_retriever(dataclasses.replace(config, engine="bm25s"), first_2000)
    rng = np.random.default_rng(0)
    titles = [first_2000.titles[row] for row in rng.choice(len(first_2000), 500, replace=False)]
    queries = (titles + [" ".join(title.split()[:1 + i % 3]) for i, title in enumerate(titles)]
               + [f"{first} ; {second}" for first, second in zip(titles[::2], titles[1::2])])
    a, b = lucene.search(queries, 11), numpy_bm25.search(queries, 11)

    def tie_free(scores):
        return np.all(np.isfinite(scores)) and np.all(-np.diff(scores) > 1e-4)

    compared = [i for i in range(len(queries)) if tie_free(a.scores[i]) and tie_free(b.scores[i])]
    assert len(compared) >= 100  # 146 of the 1,250
    assert [i for i in compared if not np.array_equal(a.rows[i, :10], b.rows[i, :10])] == []
    assert np.abs(a.scores[compared, :10] - b.scores[compared, :10]).max() <= 1e-4
    same = np.mean([np.array_equal(a.rows[i, :10], b.rows[i, :10]) for i in range(len(queries))])
    assert same >= 0.99


def test_bm25s_compiled_threaded_search_equals_its_numpy_scoring(first_2000, tmp_path):
    """The bm25s engine's search (bm25s's scoring loop compiled by numba, queries on two threads) gives
    `top_rows` of bm25s's own numpy scores exactly, rows and float32 scores, at the rewards' depth."""
    retriever = build_retriever(RetrieverConfig(backend="bm25", engine="bm25s", threads=2, cache_dir=str(tmp_path)),
                                first_2000)
    rng = np.random.default_rng(3)
    titles = [first_2000.titles[row] for row in rng.choice(len(first_2000), 300, replace=False)]
    queries = titles + [f"{a} ; {b} {b.split()[0]}" for a, b in zip(titles[::2], titles[1::2])] + ["zzzz", ""]
    found = retriever.search(queries, 1000)
    for query, rows, scores in zip(queries, found.rows, found.scores):
        ids = retriever.query_term_ids(query)
        dense = retriever.bm25.get_scores_from_ids(ids) if ids else np.zeros(len(first_2000), np.float32)
        if ids:
            assert np.array_equal(retriever.scores(ids), dense), query
        expected_rows, expected_scores = top_rows(dense, 1000)
        width = len(expected_rows)
        assert rows[:width].tolist() == expected_rows.tolist() and (rows[width:] == -1).all(), query
        assert np.array_equal(scores[:width], expected_scores), query


# --- search behaviour, every backend ------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_search_shapes_and_best_hit(retrievers, games, backend):
    retriever = retrievers[backend]
    result = retriever.search(["Halo 5: Guardians - Xbox One", "mario kart deluxe"], k=4)
    assert isinstance(result, SearchResult)
    assert result.rows.dtype == np.int64 and result.scores.dtype == np.float32
    assert result.rows.shape == result.scores.shape == (2, 4)
    assert result.item_ids(games)[0][0] == "g3" and result.item_ids(games)[1][0] == "g2"
    assert np.all(np.diff(result.scores, axis=1) <= 1e-6)
    assert retriever.search([], k=4).rows.shape == (0, 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exclude_drops_rows_and_refills(retrievers, backend):
    retriever = retrievers[backend]
    plain = retriever.search(["xbox playstation"], k=3)
    excluded = retriever.search(["xbox playstation"], k=3, exclude=[[int(plain.rows[0, 0])]])
    assert int(plain.rows[0, 0]) not in excluded.rows[0].tolist()
    assert excluded.rows[0, :2].tolist() == plain.rows[0, 1:].tolist()
    assert excluded.rows[0, 2] >= 0  # refilled from deeper in the ranking
    with pytest.raises(ValueError, match="exclude has 2 entries for 1 queries"):
        retriever.search(["xbox"], k=3, exclude=[[0], [1]])


@pytest.mark.parametrize("backend", ["pyserini", "bm25s"])
def test_bm25_pads_when_fewer_hits_than_k(retrievers, games, backend):
    result = retrievers[backend].search(["splatoon", "mario party"], k=5)
    assert result.rows[0].tolist() == [games.row_of["g9"], -1, -1, -1, -1]
    assert np.isfinite(result.scores[0, 0]) and np.all(result.scores[0, 1:] == -np.inf)
    # The duplicate titles tie; both engines order them by row.
    assert result.rows[1, :2].tolist() == [games.row_of["g10"], games.row_of["g11"]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_malformed_queries_never_raise(retrievers, backend):
    result = retrievers[backend].search(MALFORMED_QUERIES, k=3)
    assert result.rows.shape == (len(MALFORMED_QUERIES), 3)
    padded = (result.rows == -1) == np.isneginf(result.scores)
    assert padded.all()
    for i in (0, 1):  # no text at all: no hits in any backend
        assert result.rows[i].tolist() == [-1, -1, -1]
    if backend != "dense":  # no index term: no hits
        for i in (2, 3, 7):
            assert result.rows[i].tolist() == [-1, -1, -1]
        assert result.rows[8, 0] >= 0 and result.rows[6, 0] >= 0


def test_bm25_engines_agree_on_malformed_queries(retrievers):
    a = retrievers["pyserini"].search(MALFORMED_QUERIES, k=5)
    b = retrievers["bm25s"].search(MALFORMED_QUERIES, k=5)
    assert np.array_equal(a.rows, b.rows)
    finite = np.isfinite(a.scores)
    assert np.allclose(a.scores[finite], b.scores[finite], rtol=1e-5, atol=1e-4)


def test_max_query_terms_cuts_queries(games, tmp_path):
    config = RetrieverConfig(backend="bm25", engine="bm25s", max_query_terms=2, cache_dir=str(tmp_path))
    result = build_retriever(config, games).search(["the halo mario"], k=3)  # 'the' counts as a word
    assert result.item_ids(games)[0][:1] == ["g3"] and len(result.item_ids(games)[0]) == 1


def test_dense_reuses_catalog_embeddings(games, tmp_path):
    config = RetrieverConfig(backend="dense", cache_dir=str(tmp_path))
    first = build_retriever(config, games)
    reloaded = build_retriever(config, games)  # from the cache: the model is not loaded
    result = reloaded.search(games.texts, k=1)
    assert reloaded._model is None
    assert result.rows[:10, 0].tolist() == list(range(10))
    assert set(result.rows[10:, 0].tolist()) <= {10, 11}  # identical titles, identical embeddings
    assert np.allclose(result.scores[:, 0], 1.0, atol=1e-5)
    novel = "a racing game with cars"
    assert np.allclose(reloaded.query_vectors([novel]), first.encode([novel]), atol=1e-6)
    assert reloaded._model is not None


def test_dense_hnsw_matches_flat(games, tmp_path):
    flat = build_retriever(RetrieverConfig(backend="dense", cache_dir=str(tmp_path)), games)
    hnsw = build_retriever(RetrieverConfig(backend="dense", index="hnsw", cache_dir=str(tmp_path)), games)
    queries = ["nintendo switch", "playstation 4 adventure", "xbox shooter"]
    a, b = flat.search(queries, 5), hnsw.search(queries, 5)
    assert np.array_equal(a.rows, b.rows) and np.allclose(a.scores, b.scores, atol=1e-5)


def test_factory_rejects_unknown_backend(games):
    with pytest.raises(ValueError, match="retriever.backend is 'tfidf'"):
        build_retriever(RetrieverConfig(backend="tfidf"), games)
    with pytest.raises(ValueError, match="retriever.engine is 'whoosh'"):
        build_retriever(RetrieverConfig(engine="whoosh"), games)
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        build_retriever(RetrieverConfig(backend="dense", model="/no-such-model"), games)


def test_importing_retrievers_starts_no_jvm():
    code = ("import sys, jnius_config, retrievers, retrievers.bm25, retrievers.dense;"
            "assert not jnius_config.vm_running and 'jnius' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# --- the index cache -----------------------------------------------------------------------

def test_cache_detects_corruption_and_rebuilds(games, tmp_path, caplog):
    config = RetrieverConfig(backend="bm25", engine="bm25s", cache_dir=str(tmp_path))
    expected = build_retriever(config, games).search(["mario"], k=3)
    (entry,) = [p for p in tmp_path.iterdir()]
    data = entry / "data.csc.index.npy"
    data.write_bytes(data.read_bytes()[:-8])  # truncated
    with caplog.at_level(logging.WARNING, logger="rec_rl.index_cache"):
        rebuilt = build_retriever(config, games)
    assert f"{entry} is invalid (data.csc.index.npy does not match its content hash" in caplog.text
    assert verify(entry, games, json.loads((entry / MANIFEST).read_text())["settings"]) is None
    assert np.array_equal(rebuilt.search(["mario"], k=3).rows, expected.rows)


def test_cache_entry_per_index_setting(games, tmp_path):
    config = RetrieverConfig(backend="bm25", engine="bm25s", cache_dir=str(tmp_path))
    build_retriever(config, games)
    build_retriever(dataclasses.replace(config, threads=1, max_query_terms=8), games)  # search-time only
    assert len(list(tmp_path.iterdir())) == 1
    build_retriever(dataclasses.replace(config, k1=1.2), games)  # baked into bm25s scores
    assert len(list(tmp_path.iterdir())) == 2
    other = Catalog.from_items(GAMES[:5])
    assert entry_path("bm25-bm25s", other, {}, tmp_path) != entry_path("bm25-bm25s", games, {}, tmp_path)


def test_cache_reports_missing_and_foreign_files(games, tmp_path, caplog):
    builds = []

    def build(folder: Path) -> None:
        builds.append(folder)
        (folder / "vectors.bin").write_bytes(b"\x01" * 100)

    path = cached_index("demo", games, {"dim": 3}, build, tmp_path)
    assert cached_index("demo", games, {"dim": 3}, build, tmp_path) == path and len(builds) == 1
    (path / "vectors.bin").unlink()
    with caplog.at_level(logging.WARNING, logger="rec_rl.index_cache"):
        cached_index("demo", games, {"dim": 3}, build, tmp_path)
    assert "vectors.bin is missing" in caplog.text and len(builds) == 2
    (path / "stray.txt").write_text("?")
    assert verify(path, games, {"dim": 3}) == "stray.txt is not in the manifest"
    assert verify(path, games, {"dim": 4}) == "built with different settings"

    # An entry that holds another catalog's index (copied, or a shortened-hash collision) is rebuilt.
    other = Catalog.from_items(GAMES[:5])
    stale = entry_path("demo", other, {"dim": 3}, tmp_path)
    (path / "stray.txt").unlink()
    shutil.copytree(path, stale)
    with caplog.at_level(logging.WARNING, logger="rec_rl.index_cache"):
        assert cached_index("demo", other, {"dim": 3}, build, tmp_path) == stale
    assert f"{stale} is invalid (built for a different catalog); rebuilding it" in caplog.text and len(builds) == 3
    assert verify(stale, other, {"dim": 3}) is None


def test_two_builders_at_once_leave_one_valid_index(games, tmp_path):
    both_building = threading.Barrier(2, timeout=30)
    paths, errors = [], []

    def build(folder: Path) -> None:
        (folder / "part-1.bin").write_bytes(folder.name.encode())  # differs per builder
        both_building.wait()  # neither finishes before the other has started
        (folder / "part-2.bin").write_bytes(b"\x02" * 1000)

    def worker() -> None:
        try:
            paths.append(cached_index("race", games, {"v": 1}, build, tmp_path))
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(paths) == 2 and paths[0] == paths[1]
    assert verify(paths[0], games, {"v": 1}) is None
    assert [p.name for p in tmp_path.iterdir()] == [paths[0].name]  # no temporary folders left


def test_cache_removes_day_old_temporary_folders(games, tmp_path):
    path = entry_path("demo", games, {}, tmp_path)
    crashed, running = path.with_name(f".{path.name}.tmp-1-dead"), path.with_name(f".{path.name}.tmp-2-live")
    for folder in (crashed, running):
        folder.mkdir(parents=True)
    os.utime(crashed, (time.time() - 2 * 86400,) * 2)
    cached_index("demo", games, {}, lambda folder: (folder / "x.bin").write_bytes(b"x"), tmp_path)
    assert not crashed.exists() and running.exists()


# --- fuzzed queries, every backend ------------------------------------------------------------

QUERY_PIECES = ["AND", "OR", "NOT", "(", ")", ":", "*", "?", "~2", "^3", '"', "\\", "[a TO z]", "title:", "+", "-",
                "&&", "||", "/", "{", "}", "<a_0>", "<b_1>", "<c_", "_3>", "<a_99999>", "<z_0>", "mario", "halo",
                "xbox", " ", "\n", "\t", "\x00", "\ud800", "\udfff", "\u202e", "\ufeff", "nan", "inf", "1e999"]
QUERY = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(st.sampled_from(QUERY_PIECES), st.characters()), max_size=40).map("".join),
    st.integers(90_000, 110_000).map(lambda n: ("mario halo " * n)[:n]),  # ~100k characters
    st.integers(90_000, 110_000).map(lambda n: "<a_0><b_1>" * (n // 10)),
    st.just(""),
)


@pytest.fixture(scope="module")
def every_backend(games, retrievers, tmp_path_factory) -> dict[str, Retriever]:
    """The module's retrievers plus dense HNSW and semantic codes, over the same tiny catalog."""
    from rec_rl.config import CodesConfig

    cache = str(tmp_path_factory.mktemp("more-backends-cache"))
    return {**retrievers,
            "dense hnsw": build_retriever(RetrieverConfig(backend="dense", index="hnsw", cache_dir=cache), games),
            "codes": build_retriever(RetrieverConfig(backend="codes", cache_dir=cache), games,
                                     CodesConfig(levels=2, codebook_bits=2))}


@pytest.mark.parametrize("backend", ["pyserini", "bm25s", "dense", "dense hnsw", "codes"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                   HealthCheck.function_scoped_fixture])
@given(queries=st.lists(QUERY, min_size=1, max_size=4), k=st.sampled_from([1, 3, 12, 50]))
def test_fuzzed_queries_get_a_ranking_and_finite_rewards(every_backend, games, backend, queries, k):
    from rewards import RetrievalScorer, RewardConfig, build_reward_functions

    retriever = every_backend[backend]
    result = retriever.search(queries, k)
    width = min(k, len(games))
    assert result.rows.shape == result.scores.shape == (len(queries), width)
    assert ((result.rows >= -1) & (result.rows < len(games))).all()
    assert ((result.rows == -1) == np.isneginf(result.scores)).all(), "padding is row -1 with score -inf"
    assert np.isfinite(result.scores[result.rows >= 0]).all()
    assert all(isinstance(retriever.invalid_output(q), bool) for q in queries)

    # Through the reward functions TRL calls, with a completion that is valid for every backend so that
    # the batch is not wholly unscorable (which is a broken retriever, and raises by design).
    valid = games.titles[3] if backend != "codes" else code_text(retriever.codes.codes[3])
    completions = [*queries, valid]
    scorer = RetrievalScorer(retriever, games, "plain", k=4, format_penalty=-0.1)
    functions, _ = build_reward_functions(scorer, RewardConfig(parse="plain", k=4, recall_weight=1.0, mrr_weight=1.0,
                                                                length_penalty=0.01))
    columns = {"target_item_ids": [["g3"]] * len(completions), "gains": [[1.0]] * len(completions),
               "exclude_item_ids": [[]] * len(completions)}
    for function in functions:
        values = function(None, completions, **columns)
        assert len(values) == len(completions) and all(type(v) is float and math.isfinite(v) for v in values)


def test_similarity_reward_reuses_the_dense_retrievers_encoder(games, retrievers, tmp_path):
    """reward.similarity_weight's encoder: a dense retriever's own model and embeddings, else the same model
    loaded on its own; both score a query against a target identically."""
    from types import SimpleNamespace

    from rec_rl.config import RunConfig
    from rec_rl.training.rows import text_encoder
    from rewards import TargetSimilarity

    dense = retrievers["dense"]
    config = RunConfig()
    config.retriever = dataclasses.replace(config.retriever, cache_dir=str(tmp_path))
    task = SimpleNamespace(catalog=games)
    reused, fresh = text_encoder(config, task, dense), text_encoder(config, task, retrievers["bm25s"])
    assert reused[0] == dense.encode and reused[1] is dense.embeddings
    np.testing.assert_allclose(fresh[1], dense.embeddings, atol=1e-5)
    completions, targets = [games.titles[3], "a racing game"], [[games.ids[3]], [games.ids[3]]]
    scores = [TargetSimilarity(encode, embeddings, games.row_of, "plain", 32)(None, completions, targets)
              for encode, embeddings in (reused, fresh)]
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-5)
    assert scores[0][0] == pytest.approx(1.0, abs=1e-5) and scores[0][1] < scores[0][0]
