"""rec-rl: reinforcement-learning fine-tuning of LLM recommenders against frozen retrievers."""

__version__ = "0.1.0"
