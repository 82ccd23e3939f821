"""Rewards for RL fine-tuning: ranking metrics, completion parsing, and TRL reward functions.

`build_reward_functions(RetrievalScorer.from_config(retriever, catalog, config), config)` gives the
reward functions and weights for TRL's GRPOTrainer.
"""

from rewards.config import RewardConfig
from rewards.functions import (BeamRankPenalty, LengthPenalty, QueryLength, RetrievalReward, RetrievalScorer,
                               ScoredBatch, ScorerStats, TargetSimilarity, build_reward_functions, mrr_reward, ndcg_reward, recall_reward)
from rewards.metrics import mrr, ndcg_at_k, ranking_metrics, recall_at_k, relevance, target_rows
from rewards.parsing import PARSE_MODES, ParsedQuery, clean_query, completion_text, expand_query, extract_query

__all__ = [
    "BeamRankPenalty", "PARSE_MODES", "LengthPenalty", "ParsedQuery", "QueryLength", "RetrievalReward",
    "RetrievalScorer", "RewardConfig", "ScoredBatch", "ScorerStats", "TargetSimilarity", "build_reward_functions", "clean_query", "completion_text", "expand_query", "extract_query", "mrr",
    "mrr_reward", "ndcg_at_k", "ndcg_reward", "ranking_metrics", "recall_at_k", "recall_reward", "relevance", "target_rows",
]
