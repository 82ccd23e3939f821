"""Reward settings: the `reward` section of a run config (rec_rl/config.py embeds `RewardConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rec_rl.fields import documented as _help
from rewards.parsing import PARSE_MODES

SIMILARITY_MEASURES = ("cosine", "log_rank")  # what reward.similarity_weight scores (rewards.TargetSimilarity)


@dataclass
class RewardConfig:
    parse: str | None = field(default=None, **_help(
        "How the query is read from a completion: the whole text, the last <answer>...</answer> (Rec-R1), "
        "or the line starting with 'Query:'; null: the answer format of the prompt template (train.template).",
        choices=PARSE_MODES))
    k: int = field(default=1000, **_help(
        "Ranking depth the reward is computed at (NDCG@k, Recall@k); deep enough that an untrained policy "
        "sometimes reaches the target (Rec-R1 trained sequential recommendation at 5000)."))
    ndcg_weight: float = field(default=1.0, **_help("Weight of the NDCG@k reward (0: logged only)."))
    recall_weight: float = field(default=0.0, **_help("Weight of the Recall@k reward (0: logged only)."))
    mrr_weight: float = field(default=0.0, **_help(
        "Weight of the MRR@k reward, 1/rank of the first target (0: logged only): as dense as NDCG@k, "
        "since any hit in the top k scores, but it weighs the top ranks the way NDCG@10 does."))
    rank_weight: float = field(default=0.0, **_help(
        "Weight of MiniOneRec's beam-rank reward (explicit route, train.rollout=beam): in a group that holds "
        "the target's exact code, every other beam is penalised by 1/log2(rank + 2), normalised to sum to 1 "
        "over the group's ranks, so wrong codes ranked above the target are pushed down hardest (0: off)."))
    similarity_weight: float = field(default=0.0, **_help(
        "Weight of the cosine between the query's and the target item's text embeddings (retriever.model's "
        "sentence-transformers encoder; implicit route): a shaping reward that is never exactly 0, so a group "
        "whose queries all miss the target still ranks them (0: off)."))
    similarity: str = field(default="cosine", **_help(
        "What reward.similarity_weight scores: 'cosine', the query-target cosine itself; or 'log_rank', "
        "1 - log(rank) / log(n) for the target's rank among the n catalog items (history dropped) by cosine to "
        "the query, so a generic query ('xbox 360 games'), close to every item of its platform, earns less "
        "than one that singles the target out.", choices=SIMILARITY_MEASURES))
    format_penalty: float = field(default=0.0, **_help(
        "Reward for a completion that does not follow the answer format or whose query the retriever rejects, "
        "e.g. -0.1 (0: the same as retrieving nothing)."))
    query_expansion: bool = field(default=False, **_help(
        "Search the user's history titles (the trivial query, the last data.history_len titles) followed by the "
        "policy's query, in training and in evaluation: the policy writes words to add to the trivial query "
        "(query2doc-style expansion), so RL starts near it and is scored by what its words change; an empty "
        "completion searches the titles alone (implicit route, sequential data; max_query_words cuts the "
        "policy's words only)."))
    max_query_words: int = field(default=32, **_help(
        "Queries are cut to this many words before search; with length_penalty, the words allowed for free."))
    length_penalty: float = field(default=0.0, **_help(
        "Reward subtracted per query word beyond max_query_words (0: no length reward)."))
    repeat_penalty: float = field(default=0.0, **_help(
        "Reward subtracted in proportion to the share of the query's word trigrams that repeat an earlier one "
        "(a looping query: 'xbox 360 xbox 360 ...'), e.g. 0.05 (0: off)."))
    log_query_length: bool = field(default=True, **_help(
        "Log the mean query length in words as a reward of weight 0."))
