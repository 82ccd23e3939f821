"""Bootstrap confidence intervals over evaluation rows (users or queries)."""

from __future__ import annotations

import numpy as np

CHUNK = 100  # resamples drawn at once: bounds memory at CHUNK x n_rows indices


def _resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(values)
    means = []
    for start in range(0, resamples, CHUNK):
        count = min(CHUNK, resamples - start)
        means.append(values[rng.integers(0, n, size=(count, n))].mean(axis=1))
    return np.concatenate(means)


def bootstrap_interval(values, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of `values` and its percentile bootstrap interval.

    Example:
        >>> mean, low, high = bootstrap_interval([0.0, 1.0] * 50, resamples=200)
        >>> mean, low < 0.5 < high
        (0.5, True)
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    means = _resampled_means(values, resamples, seed)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(values.mean()), float(low), float(high)


def paired_difference(a, b, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of `a - b` over the same rows, its bootstrap interval, and whether the interval excludes 0.

    Resampling the per-row differences keeps the pairing: both systems are judged on the same users.

    Example:
        >>> result = paired_difference([1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], resamples=200)
        >>> result["mean"], result["significant"]
        (0.75, True)
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired rows differ in shape: {a.shape} vs {b.shape}")
    mean, low, high = bootstrap_interval(a - b, resamples, seed, level)
    return {"mean": mean, "low": low, "high": high, "significant": bool(low > 0 or high < 0)}
