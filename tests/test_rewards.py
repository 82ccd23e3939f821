"""Rewards: metrics against independent references, parsing, and the TRL reward functions end to end."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import pytrec_eval
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score

import rewards.functions
import rewards.metrics
import rewards.parsing
from rec_rl.config import describe
from rec_rl.data.catalog import Catalog
from retrievers.base import Retriever, SearchResult, rows_result
from rewards import (LengthPenalty, QueryLength, RetrievalScorer, RewardConfig, build_reward_functions,
                     completion_text, expand_query, extract_query, mrr, mrr_reward, ndcg_at_k, ndcg_reward, ranking_metrics, recall_at_k,
                     recall_reward, target_rows)

# ---------------------------------------------------------------------------------------------- metrics


def random_case(rng: np.random.Generator, universe: int = 30):
    """A ranking of distinct items and graded targets (integer gains, some 0, some targets repeated)."""
    ranked = rng.permutation(universe)[:rng.integers(10, universe + 1)].tolist()
    targets = rng.choice(universe, size=rng.integers(1, 8)).tolist()  # with replacement: repeats
    gains = rng.integers(0, 4, size=len(targets)).astype(float).tolist()
    gains[0] = max(gains[0], 1.0)  # at least one relevant target
    return ranked, targets, gains


def true_relevance(targets, gains, universe: int) -> np.ndarray:
    relevance = np.zeros(universe)
    for target, gain in zip(targets, gains):
        relevance[target] = max(relevance[target], gain)
    return relevance


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    universe = 30
    for _ in range(40):
        ranked, targets, gains = random_case(rng, universe)
        # Ranked items score by rank; unranked ones lower still, so they rank after the list (distinct
        # scores: sklearn averages ties).
        scores = np.full(universe, -1.0) - rng.random(universe)
        scores[ranked] = np.arange(len(ranked), 0, -1)
        for k in (1, 3, 10):
            if k > len(ranked):
                continue
            expected = ndcg_score([true_relevance(targets, gains, universe)], [scores], k=k)
            assert ndcg_at_k(ranked, targets, gains, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_metrics_match_trec_eval(seed):
    rng = np.random.default_rng(100 + seed)
    cases = [random_case(rng) for _ in range(60)]
    qrels = {f"q{i}": {f"d{t}": int(g) for t, g in zip(*_max_gains(targets, gains))}
             for i, (_, targets, gains) in enumerate(cases)}
    run = {f"q{i}": {f"d{item}": float(len(ranked) - rank) for rank, item in enumerate(ranked)}
           for i, (ranked, _, _) in enumerate(cases)}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_5", "ndcg_cut_10", "recall_5", "recall_10",
                                                       "recip_rank"})
    results = evaluator.evaluate(run)
    for i, (ranked, targets, gains) in enumerate(cases):
        expected = results[f"q{i}"]
        for k in (5, 10):
            assert ndcg_at_k(ranked, targets, gains, k) == pytest.approx(expected[f"ndcg_cut_{k}"], abs=1e-9)
            assert recall_at_k(ranked, targets, gains, k) == pytest.approx(expected[f"recall_{k}"], abs=1e-12)
        assert mrr(ranked, targets, gains) == pytest.approx(expected["recip_rank"], abs=1e-12)


def _max_gains(targets, gains):
    best = {}
    for target, gain in zip(targets, gains):
        best[target] = max(best.get(target, 0.0), gain)
    return list(best), list(best.values())


def test_metric_rules_by_hand():
    # linear gains: a gain-3 hit at rank 1 with one gain-1 target unfound
    assert ndcg_at_k(["a"], ["a", "b"], [3.0, 1.0], k=5) == pytest.approx(3 / (3 + 1 / math.log2(3)))
    # a target listed twice counts once, with its larger gain
    assert ndcg_at_k(["a"], ["a", "a"], [0.5, 1.0], k=5) == 1.0
    assert recall_at_k(["a"], ["a", "a", "b"], k=5) == 0.5
    # a duplicated relevant item earns its gain once, at its first rank; padding takes a rank
    assert ndcg_at_k([-1, "a", "a"], ["a"], k=5) == pytest.approx(1 / math.log2(3))
    assert recall_at_k([1, 1, 1], [1, 2], k=3) == 0.5
    assert mrr([-1, None, 7], [7]) == pytest.approx(1 / 3)
    # padding never matches, even a negative target
    assert recall_at_k([-1, -1], [-1], k=2) == 0.0
    # gains <= 0 are not relevant; no relevant target scores 0
    assert ndcg_at_k(["a"], ["a"], [0.0], k=5) == 0.0
    assert ndcg_at_k(["a"], [], k=5) == recall_at_k(["a"], [], k=5) == mrr(["a"], []) == 0.0
    # cut-offs
    assert recall_at_k(["x", "a"], ["a"], k=1) == 0.0 and mrr(["x", "a"], ["a"], k=1) == 0.0
    with pytest.raises(ValueError):
        ndcg_at_k(["a"], ["a"], k=0)
    with pytest.raises(ValueError):
        ndcg_at_k(["a"], ["a", "b"], [1.0])
    with pytest.raises(ValueError):
        ndcg_at_k(["a"], ["a"], [float("nan")])


@pytest.mark.parametrize("seed", range(4))
def test_batch_metrics_equal_scalar_metrics(seed):
    rng = np.random.default_rng(seed)
    n, depth, universe = 300, 12, 40
    rows = rng.integers(-1, universe, size=(n, depth))  # padding and duplicates anywhere
    rows[rng.random(n) < 0.2, 6:] = -1  # short rankings, padded at the end
    targets, gains = [], []
    for _ in range(n):
        m = int(rng.integers(0, 6))
        row_targets = rng.integers(-4, universe, size=m).tolist()  # negative: unknown to the catalog
        targets.append(row_targets)
        gains.append(rng.choice([0.0, 0.01, 0.1, 0.5, 1.0, 2.0], size=m).tolist())
    ks = [1, 5, 12, 50]
    batch = ranking_metrics(rows, targets, gains, ks)
    for i in range(n):
        for k in ks:
            assert batch[f"ndcg@{k}"][i] == ndcg_at_k(rows[i], targets[i], gains[i], k)
            assert batch[f"recall@{k}"][i] == recall_at_k(rows[i], targets[i], gains[i], k)
        assert batch["mrr"][i] == mrr(rows[i], targets[i], gains[i])
    assert set(batch) == {f"{name}@{k}" for name in ("ndcg", "recall") for k in ks} | {"mrr"}


def test_batch_metrics_edge_shapes():
    empty = ranking_metrics(np.empty((0, 5), np.int64), [], [], [10])
    assert empty["ndcg@10"].shape == (0,)
    no_depth = ranking_metrics(np.empty((2, 0), np.int64), [[1], []], None, [3])
    assert no_depth["ndcg@3"].tolist() == [0.0, 0.0] and no_depth["mrr"].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        ranking_metrics(np.zeros((2, 3), np.int64), [[1]], None, [3])


def test_unknown_targets_each_count_once():
    rows = target_rows(["0", "gone", "also gone", "gone"], {"0": 0})
    assert rows == [0, -2, -3, -2]
    metrics = ranking_metrics(np.array([[0, 5]]), [rows], None, [2])
    assert metrics["recall@2"][0] == pytest.approx(1 / 3)


# ---------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text, mode, expected", [
    ("  zelda  breath\n of the wild ", "plain", ("zelda breath of the wild", True)),
    ("", "plain", ("", False)),
    ("<think>he likes halo</think>\n<answer> halo 5 </answer>", "answer_tag", ("halo 5", True)),
    ("<answer>first</answer> then <answer>second</answer>", "answer_tag", ("second", True)),
    ("<answer>halo 5", "answer_tag", ("halo 5", False)),  # cut off before the closing tag
    ("no tags at all", "answer_tag", ("no tags at all", False)),
    ("<answer>  </answer>", "answer_tag", ("", False)),
    ("Query: mario kart", "query_line", ("mario kart", True)),
    ("Sure!\n**Query:** halo  guardians\nQuery: ignored", "query_line", ("halo guardians", True)),
    ("query : fifa", "query_line", ("fifa", True)),
    ("\n\nmario kart\nsecond line", "query_line", ("mario kart", False)),
    ("Query:", "query_line", ("", False)),
    ("Query: zelda\x00 switch\ud800 game", "query_line", ("zelda switch game", True)),
])
def test_extract_query(text, mode, expected):
    assert tuple(extract_query(text, mode)) == expected


def test_completion_text_accepts_trl_formats_and_junk():
    assert completion_text("Query: a") == "Query: a"
    chat = [{"role": "assistant", "content": "first"}, {"role": "tool", "content": "x"},
            {"role": "assistant", "content": [{"type": "text", "text": "Query: "}, {"type": "image"},
                                              {"type": "text", "text": "halo"}]}]
    assert completion_text(chat) == "Query: halo"
    assert completion_text({"role": "assistant", "content": "one message"}) == "one message"
    for junk in (None, 3, 2.5, b"Query: bytes", [], [1, 2], [{"role": ["x"], "content": None}],
                 [{"content": {"nested": [1]}}], [[{"role": "assistant", "content": "too deep"}]]):
        assert completion_text(junk) == ""
        assert extract_query(junk, "query_line") == ("", False)
    with pytest.raises(ValueError):
        extract_query("x", "regex")


def test_answer_tag_parsing_is_linear_on_unclosed_tags():
    text = "<answer>" * 20_000 + "x"
    assert extract_query(text, "answer_tag") == ("x", False)  # a lazy regex would take minutes


# ---------------------------------------------------------------------------------------------- scorer

ITEMS = [("g0", "Super Mario Odyssey"), ("g1", "Mario Kart 8 Deluxe"), ("g2", "Halo 5 Guardians"),
         ("g3", "Halo Infinite"), ("g4", "Zelda Breath of the Wild"), ("g5", "FIFA 18")]


class WordOverlapRetriever(Retriever):
    """Ranks items by shared lowercase words with the query; counts calls; raises on chosen inputs.

    `strict` mimics a query parser that rejects Lucene syntax; `broken` fails on everything.
    """

    def __init__(self, catalog: Catalog, strict: bool = False, broken: bool = False):
        self.catalog, self.strict, self.broken = catalog, strict, broken
        self.calls: list[list[str]] = []
        self.words = [set(text.lower().split()) for text in catalog.texts]

    def _search(self, queries: list[str], k: int) -> SearchResult:
        self.calls.append(list(queries))
        if self.broken:
            raise ConnectionError("index unavailable")
        if self.strict and any(c in q for q in queries for c in ':*"()'):
            raise ValueError("Cannot parse query")
        rows = np.full((len(queries), k), -1, np.int64)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        for i, query in enumerate(queries):
            overlap = np.array([len(words & set(query.lower().split())) for words in self.words], float)
            ranked = [row for row in np.argsort(-overlap, kind="stable") if overlap[row] > 0][:k]
            rows[i, :len(ranked)] = ranked
            scores[i, :len(ranked)] = overlap[ranked]
        return rows_result(rows, scores)


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.from_items(ITEMS)


def columns(n: int, target="g1", exclude=()):
    return {"target_item_ids": [[target]] * n, "gains": [[1.0]] * n, "exclude_item_ids": [list(exclude)] * n}


def test_rewards_score_the_retrieved_ranking(catalog):
    scorer = RetrievalScorer(WordOverlapRetriever(catalog), catalog, "query_line", k=4)
    ndcg, recall = ndcg_reward(scorer), recall_reward(scorer, k=1)
    completions = ["Query: mario kart", "Query: super mario", "Query: halo", "no query line", ""]
    assert ndcg.__name__ == "ndcg@4" and recall.__name__ == "recall@1"
    values = ndcg(None, completions, **columns(5))
    # rank 1; rank 2 (odyssey first: 2 shared words); not retrieved; malformed; malformed
    assert values == pytest.approx([1.0, 1 / math.log2(3), 0.0, 0.0, 0.0])
    assert recall(None, completions, **columns(5)) == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_unknown_targets_and_exclusions(catalog):
    scorer = RetrievalScorer(WordOverlapRetriever(catalog), catalog, "plain", k=4)
    recall = recall_reward(scorer)
    kwargs = {"target_item_ids": [["g1", "not-in-catalog"]], "gains": [[1.0, 1.0]]}
    assert recall(None, ["mario kart"], **kwargs) == [0.5]
    # g1 excluded (the user's history): it is dropped from the ranking and cannot earn reward
    assert recall(None, ["mario kart"], exclude_item_ids=[["g1", "unknown"]], **kwargs) == [0.0]
    assert scorer.retrieve(["mario kart"], [["g1"]]).rows[0].tolist() == [0, -1, -1, -1]
    keep = RetrievalScorer(WordOverlapRetriever(catalog), catalog, "plain", k=4, drop_excluded=False)
    assert recall_reward(keep)(None, ["mario kart"], exclude_item_ids=[["g1"]], **kwargs) == [0.5]


def test_query_expansion_searches_the_history_titles_then_the_policy_words(catalog):
    retriever = WordOverlapRetriever(catalog)
    mrr = mrr_reward(RetrievalScorer(retriever, catalog, "plain", k=4, query_expansion=True))
    plain = mrr_reward(RetrievalScorer(WordOverlapRetriever(catalog), catalog, "plain", k=4))
    completions = ["guardians", "halo", ""]
    rows = {"target_item_ids": [["g0"], ["g2"], ["g0"]], "gains": [[1.0]] * 3,
            "exclude_item_ids": [["g1"]] * 3, "history_titles": [["Mario Kart 8 Deluxe"]] * 3}
    # The history title's "mario" finds g0 (its own g1 is dropped) and ranks g0 above the Halo games; an empty
    # completion adds nothing and searches the titles alone (the trivial query), where without expansion it is
    # malformed, scored 0 and not searched.
    assert mrr(None, completions, **rows) == pytest.approx([1.0, 0.5, 1.0])
    assert retriever.calls[-1] == ["Mario Kart 8 Deluxe guardians", "Mario Kart 8 Deluxe halo", "Mario Kart 8 Deluxe"]
    assert plain(None, completions, **rows) == pytest.approx([0.0, 1.0, 0.0])  # the titles are ignored without it
    # A completion that breaks its format is still unscored: expansion pardons only the empty one.
    lines = mrr_reward(RetrievalScorer(WordOverlapRetriever(catalog), catalog, "query_line", k=4,
                                       query_expansion=True, format_penalty=-1.0))
    assert lines(None, ["mario without a query line", ""], **{key: value[1:] for key, value in rows.items()}) == \
        pytest.approx([-1.0, 1.0])
    del rows["history_titles"]
    with pytest.raises(ValueError, match="history_titles"):
        mrr(None, completions, **rows)
    assert expand_query("kart", ["Super Mario Odyssey", "Halo Infinite"]) == "Super Mario Odyssey Halo Infinite kart"


def test_evaluation_searches_what_the_expanded_reward_searched(catalog, monkeypatch):
    """The evaluation of a reward.query_expansion run ranks each user by the same text the reward searched."""
    from rec_rl.evaluation import policy as evaluation

    completions = ["guardians", "halo", ""]
    monkeypatch.setattr(evaluation, "generate", lambda *args, **kwargs: (completions, 3))
    rows = {"exclude_item_ids": [["g1"]] * 3, "history_titles": [["Mario Kart 8 Deluxe"], ["Halo 3"], ["Halo 3"]]}
    retriever = WordOverlapRetriever(catalog)
    found, _, info = evaluation.policy_rankings(None, None, rows, ["prompt"] * 3, retriever, catalog, "plain", k=4,
                                                max_new_tokens=4, batch_size=3, query_expansion=True)
    assert retriever.calls[-1] == ["Mario Kart 8 Deluxe guardians", "Halo 3 halo", "Halo 3"]
    assert info["invalid_rate"] == 0.0  # the empty completion searched the titles alone
    scored = RetrievalScorer(WordOverlapRetriever(catalog), catalog, "plain", k=4, query_expansion=True).retrieve(
        completions, rows["exclude_item_ids"], history_titles=rows["history_titles"])
    assert scored.scored.all() and (scored.rows == found.rows).all()


def test_one_search_per_batch_with_duplicates_and_memo(catalog):
    retriever = WordOverlapRetriever(catalog)
    scorer = RetrievalScorer(retriever, catalog, "query_line", k=3)
    funcs, _ = build_reward_functions(scorer, RewardConfig(k=3, recall_weight=0.5))
    # A group repeats itself; the last completion repeats a query with another exclude set.
    group = ["Query: halo"] * 3 + ["Query: mario kart"] * 4 + ["bad format", "Query: halo"]
    kwargs = columns(9) | {"exclude_item_ids": [["g5"]] * 8 + [["g0"]], "completion_ids": [[1]] * 9,
                           "trainer_state": object(), "log_extra": lambda column, values: None}
    logged = {}
    for func in funcs:
        func(None, group, log_metric=logged.__setitem__, **kwargs)
    assert retriever.calls == [["halo", "mario kart", "halo"]]  # one call, three distinct pairs
    assert scorer.stats.search_calls == 1 and scorer.stats.memo_hits == 2  # ndcg searched; recall, mrr memo
    assert scorer.stats.requested == 8 and scorer.stats.searched == 3
    assert scorer.stats.hit_rate == pytest.approx(5 / 8)
    assert logged["retrieval/malformed_rate"] == pytest.approx(1 / 9)


def test_mrr_reward_is_the_reciprocal_rank_within_k(catalog):
    scorer = RetrievalScorer(WordOverlapRetriever(catalog), catalog, "plain", k=4)
    ranked = scorer.retrieve(["mario kart"]).rows[0].tolist()
    target = catalog.ids[ranked[1]]  # the second-ranked item
    assert mrr_reward(scorer)(None, ["mario kart"], target_item_ids=[[target]]) == [0.5]
    assert mrr_reward(scorer, k=1)(None, ["mario kart"], target_item_ids=[[target]]) == [0.0]
    assert mrr_reward(scorer)(None, ["mario kart"], target_item_ids=[["not in catalog"]]) == [0.0]


def test_conversational_and_plain_completions_get_the_same_reward(catalog):
    scorer = RetrievalScorer(WordOverlapRetriever(catalog), catalog, "answer_tag", k=4)
    ndcg = ndcg_reward(scorer)
    texts = ["<answer>mario kart</answer>", "<think>hmm</think><answer>super mario</answer>", "<answer>halo"]
    chats = [[{"role": "assistant", "content": text}] for text in texts]
    parts = [[{"role": "assistant", "content": [{"type": "text", "text": text}]}] for text in texts]
    expected = ndcg(None, texts, **columns(3))
    assert expected[0] == 1.0 and expected[2] == 0.0
    assert ndcg(None, chats, **columns(3)) == expected == ndcg(None, parts, **columns(3))


def test_partial_failures_get_the_format_penalty(catalog, caplog):
    retriever = WordOverlapRetriever(catalog, strict=True)
    scorer = RetrievalScorer(retriever, catalog, "plain", k=4, format_penalty=-0.1)
    values = ndcg_reward(scorer)(None, ["mario kart", 'title:"mario', "halo", "   "], **columns(4))
    assert values == pytest.approx([1.0, -0.1, 0.0, -0.1])
    assert len(retriever.calls) == 1 + 3  # the batch, then each distinct query alone
    assert scorer.stats.failed == 1 and "title" in caplog.text


def test_broken_retriever_raises_loudly(catalog):
    scorer = RetrievalScorer(WordOverlapRetriever(catalog, broken=True), catalog, "plain", k=4)
    with pytest.raises(RuntimeError, match="broken") as raised:
        ndcg_reward(scorer)(None, ["mario", "halo"], **columns(2))
    assert isinstance(raised.value.__cause__, ConnectionError)
    # nothing to search (every completion malformed) is the policy's fault, not the retriever's
    assert ndcg_reward(scorer)(None, ["", " "], **columns(2)) == [0.0, 0.0]


def test_repeat_penalty_hits_loops_not_franchises(catalog):
    from rewards.functions import RepeatPenalty, repeated_trigram_share

    # Titles of one franchise share words, not trigrams; a loop repeats trigrams; punctuation and case are ignored.
    assert repeated_trigram_share("Guitar Hero 3; Guitar Hero Aerosmith; Rock Band 3") == 0.0
    assert repeated_trigram_share("Xbox 360 - Xbox 360 - Xbox 360") == 0.5  # 4 trigrams, 2 of them new
    assert repeated_trigram_share("Luxor: Quest Luxor quest LUXOR QUEST") == 0.5
    assert repeated_trigram_share("two words") == 0.0 and repeated_trigram_share("") == 0.0
    penalty = RepeatPenalty("query_line", 0.5)
    assert penalty(None, ["Query: zelda zelda zelda zelda", "Query: mario kart 8", "no query line"]) == [-0.25, 0.0, 0.0]
    with pytest.raises(ValueError):
        RepeatPenalty("plain", -1.0)
    scorer = RetrievalScorer(WordOverlapRetriever(catalog), catalog, "plain", k=4)
    funcs, weights = build_reward_functions(scorer, RewardConfig(k=4, repeat_penalty=0.05, log_query_length=False))
    assert [f.__name__ for f in funcs][-1] == "repeat_penalty" and weights[-1] == 1.0


def test_target_similarity_grades_misses_by_closeness_to_the_target(catalog):
    """The shaping reward: cosine of the query to the target item's embedding, never 0 for a real query, the
    closest of several targets, 0 for malformed queries and for targets outside the catalog; each distinct
    query encoded once."""
    from rewards import TargetSimilarity

    rng = np.random.default_rng(0)
    items = rng.normal(size=(len(catalog), 8))
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    encoded = []

    def encode(texts):  # a query "item i" embeds as item i's vector, anything else as a fixed mix
        encoded.extend(texts)
        return np.stack([items[int(t.split()[1])] if t.startswith("item ") else items[:2].mean(0) for t in texts])

    ids = catalog.ids
    reward = TargetSimilarity(encode, items, catalog.row_of, "query_line", max_query_words=32)
    completions = ["Query: item 0", "Query: item 1", "Query: item 0", "no query line", "Query: something else"]
    targets = [[ids[0]], [ids[0]], [ids[1], ids[0]], [ids[0]], [ids[2], "not-in-catalog"]]
    values = reward(None, completions, target_item_ids=targets)
    assert values[0] == pytest.approx(1.0) and values[2] == pytest.approx(1.0)  # the closest target counts
    assert values[1] == pytest.approx(float(items[0] @ items[1]))
    assert values[3] == 0.0  # malformed
    assert values[4] == pytest.approx(float(items[2] @ items[:2].mean(0)))
    assert sorted(encoded) == ["item 0", "item 1", "something else"]
    assert reward(None, ["Query: item 1"], target_item_ids=[["not-in-catalog"]]) == [0.0]
    with pytest.raises(ValueError, match="target lists"):
        reward(None, completions, target_item_ids=targets[:2])
    scorer = RetrievalScorer(WordOverlapRetriever(catalog), catalog, "query_line", k=4)
    spec = RewardConfig(k=4, similarity_weight=0.5, log_query_length=False)
    with pytest.raises(ValueError, match="similarity_weight needs"):
        build_reward_functions(scorer, spec)
    funcs, weights = build_reward_functions(scorer, spec, encode, items)
    assert [f.__name__ for f in funcs] == ["ndcg@4", "recall@4", "mrr@4", "target_similarity"] and weights[-1] == 0.5


def test_target_similarity_log_rank_charges_a_query_for_the_items_it_does_not_tell_apart():
    """measure='log_rank': 1 - log(rank) / log(n) for the target's rank by cosine among the catalog items outside
    the history; the nearest item scores 1, the farthest 0, and dropping history items lifts the target."""
    from rewards import TargetSimilarity

    items = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])  # cosines to "east": 1, 0.8, 0, -1
    row_of = {"a": 0, "b": 1, "c": 2, "d": 3}
    reward = TargetSimilarity(lambda texts: np.array([[1.0, 0.0]] * len(texts)), items, row_of, "plain",
                              max_query_words=32, measure="log_rank")
    values = reward(None, ["east", "east", "east", "east", ""], target_item_ids=[["a"], ["c"], ["d"], ["c"], ["a"]],
                    exclude_item_ids=[[], [], [], ["a"], []])
    assert values[0] == pytest.approx(1.0) and values[2] == pytest.approx(0.0)
    assert values[1] == pytest.approx(1 - math.log(3) / math.log(4))  # third of four
    assert values[3] == pytest.approx(1 - math.log(2) / math.log(3))  # "a" dropped: second of three
    assert values[4] == 0.0  # malformed
    # without the history column every item is a candidate
    assert reward(None, ["east"], target_item_ids=[["c"]]) == [pytest.approx(values[1])]
    with pytest.raises(ValueError, match="reward.similarity"):
        TargetSimilarity(reward.encode, items, row_of, "plain", max_query_words=32, measure="dot")


def test_query_length_and_length_penalty():
    completions = ["Query: a b c d e", "Query: a", "no format here"]
    assert QueryLength("query_line")(None, completions) == [5.0, 1.0, 3.0]
    assert LengthPenalty("query_line", 2, 0.25)(None, completions) == [-0.75, 0.0, -0.25]


def test_build_reward_functions(catalog):
    scorer = RetrievalScorer.from_config(WordOverlapRetriever(catalog), catalog, RewardConfig(parse="query_line", k=5))
    funcs, weights = build_reward_functions(scorer, RewardConfig(k=5))
    assert [f.__name__ for f in funcs] == ["ndcg@5", "recall@5", "mrr@5", "query_length"]
    assert weights == [1.0, 0.0, 0.0, 0.0]
    spec = RewardConfig(k=5, ndcg_weight=0.0, recall_weight=1.0, length_penalty=0.1, log_query_length=False)
    funcs, weights = build_reward_functions(scorer, spec)
    assert [f.__name__ for f in funcs] == ["recall@5", "ndcg@5", "mrr@5", "length_penalty"] and weights == [1.0, 0.0, 0.0, 1.0]
    funcs, weights = build_reward_functions(scorer, RewardConfig(k=5, ndcg_weight=0.0, mrr_weight=1.0))
    assert [f.__name__ for f in funcs][:3] == ["mrr@5", "ndcg@5", "recall@5"] and weights[:3] == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        build_reward_functions(scorer, RewardConfig(ndcg_weight=0.0))
    with pytest.raises(ValueError):
        ndcg_reward(scorer, k=6)  # deeper than the scorer searches
    assert {line.split(" = ")[0] for line in describe(RewardConfig)} == {
        "parse", "k", "ndcg_weight", "recall_weight", "mrr_weight", "rank_weight", "format_penalty", "max_query_words",
        "similarity_weight", "similarity", "repeat_penalty", "length_penalty", "log_query_length", "query_expansion"}
    funcs, weights = build_reward_functions(scorer, RewardConfig(k=5, rank_weight=0.5, log_query_length=False))
    assert [f.__name__ for f in funcs] == ["ndcg@5", "recall@5", "mrr@5", "beam_rank"] and weights[-1] == 0.5


def test_beam_rank_penalty_pushes_down_the_beams_above_a_hit():
    """MiniOneRec's ranking reward: in a group holding the target's exact code (first hit of its ranking), each
    miss gets -1/log2(rank + 2) normalised over the group's ranks; groups without a hit get 0."""
    from rewards import BeamRankPenalty

    class ExactHits:  # the scorer's answer to "mrr@1": 1 where the completion is the target's exact code
        def rewards(self, metric, k, completions, target_item_ids, gains=None, exclude_item_ids=None, log_metric=None):
            assert (metric, k) == ("mrr", 1)
            return [1.0 if c == t[0] else 0.0 for c, t in zip(completions, target_item_ids)]

    penalty = BeamRankPenalty(ExactHits())
    completions = ["a", "b", "c", "d", "x", "y", "z", "w"]
    targets = [["c"]] * 4 + [["q"]] * 4  # the first group's third beam is the hit; the second group has none
    values = penalty(None, completions, targets, beam_rank=[0, 1, 2, 3, 0, 1, 2, 3])
    weights = 1 / np.log2(np.arange(4) + 2)
    assert np.allclose(values[:4], [-weights[0] / weights.sum(), -weights[1] / weights.sum(), 0.0, -weights[3] / weights.sum()])
    assert values[4:] == [0.0] * 4
    assert values[0] < values[1] < values[3] < 0  # the higher a wrong beam ranks, the harder it is pushed down
    with pytest.raises(ValueError, match="train.rollout=beam"):
        penalty(None, completions, targets)
    with pytest.raises(ValueError, match="start every group"):
        penalty(None, completions[:2], targets[:2], beam_rank=[1, 0])


def test_trl_sees_the_names_and_calls_synchronously(catalog):
    from trl.trainer.utils import get_callable_name, is_async_callable

    scorer = RetrievalScorer(WordOverlapRetriever(catalog), catalog, k=4)
    funcs, _ = build_reward_functions(scorer, RewardConfig(k=4, length_penalty=0.1))
    assert [get_callable_name(f) for f in funcs] == ["ndcg@4", "recall@4", "mrr@4", "length_penalty", "query_length"]
    assert not any(is_async_callable(f) for f in funcs)


JUNK = st.sampled_from([
    None, 0, -1.5, float("nan"), b"\xff\xfe", ["Query: x"], [{"role": "assistant"}], {"content": 5},
    "AND ( : * \"", "Query: title:(mario OR \"halo*\") AND -", "Query: \ud800\udfff\x00", "<answer>\x00</answer>",
    "Query: \u202e\ufeff\u200b",
])
HUGE = st.integers(10_000, 60_000).map(lambda n: ["x ", "Query: mario ", "\x00", "<answer>"][n % 4] * n)
TOKENS = ["\ud800", "\udfff", "\x00", "\n", ":", "*", '"', "(", "<answer>", "</answer>", "Query:", "mario", " "]
TEXT = st.lists(st.one_of(st.characters(), st.sampled_from(TOKENS)), max_size=40).map("".join)
COMPLETION = st.one_of(JUNK, HUGE, TEXT, TEXT.map(lambda t: "Query: " + t),
                       TEXT.map(lambda t: [{"role": "assistant", "content": t}]),
                       st.recursive(st.none() | st.integers() | st.text(max_size=5),
                                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                                        st.sampled_from(["role", "content", "type", "text"]), inner, max_size=3),
                                    max_leaves=8))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(completions=st.lists(COMPLETION, min_size=1, max_size=6), mode=st.sampled_from(["plain", "answer_tag",
                                                                                        "query_line"]))
def test_any_completion_gets_a_finite_reward(completions, mode):
    catalog = Catalog.from_items(ITEMS)
    # A strict retriever rejects Lucene syntax; one valid completion keeps the batch from failing entirely.
    scorer = RetrievalScorer(WordOverlapRetriever(catalog, strict=True), catalog, mode, k=4, format_penalty=-0.1)
    completions = [*completions, {"plain": "mario", "answer_tag": "<answer>mario</answer>"}.get(mode, "Query: mario")]
    funcs, _ = build_reward_functions(scorer, RewardConfig(parse=mode, k=4, recall_weight=1.0, length_penalty=0.01))
    for func in funcs:
        values = func(None, completions, **columns(len(completions), target="g0"))
        assert len(values) == len(completions)
        assert all(type(value) is float and math.isfinite(value) for value in values)
    assert values[-1] == 1.0  # query_length of "mario"


@pytest.mark.parametrize("module", [rewards.metrics, rewards.parsing, rewards.functions])
def test_docstring_examples(module):
    assert doctest.testmod(module).failed == 0
