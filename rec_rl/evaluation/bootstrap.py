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
    """Mean of `a - b` over the same rows, its bootstrap interval, whether the interval excludes 0, and a
    two-sided bootstrap p-value (twice the share of resampled means on the far side of 0, at least
    1 / resamples), which `holm` adjusts when one table tests several differences.

    Resampling the per-row differences keeps the pairing: both systems are judged on the same users.

    Example:
        >>> result = paired_difference([1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], resamples=200)
        >>> result["mean"], result["significant"], result["p"] < 0.05
        (0.75, True, True)
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired rows differ in shape: {a.shape} vs {b.shape}")
    differences = a - b
    mean, low, high = bootstrap_interval(differences, resamples, seed, level)
    if len(differences) == 0 or not np.any(differences):  # identical systems: nothing to test
        p = 1.0
    else:
        means = _resampled_means(differences, resamples, seed)
        p = min(1.0, max(2 * min(np.mean(means <= 0), np.mean(means >= 0)), 1 / resamples))
    return {"mean": mean, "low": low, "high": high, "significant": bool(low > 0 or high < 0), "p": float(p)}


def holm(p_values, alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """Holm's step-down adjustment of `p_values` (one family of tests): adjusted p-values, and which reject at `alpha`.

    Written out rather than imported: it is a few lines, and statsmodels (which has it) is not otherwise a
    dependency. Matches `statsmodels.stats.multitest.multipletests(p, method="holm")`.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        ([0.03, 0.06, 0.06], [True, False, False])
    """
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    adjusted = [round(float(value), 12) for value in adjusted]
    return adjusted, [value <= alpha for value in adjusted]
