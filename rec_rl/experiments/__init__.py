"""Experiments made of several training runs, each `rec-rl train` in its own process: `rec-rl compare` (one run per
route) and `rec-rl seeds` (one run per seed)."""
