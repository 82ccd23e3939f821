"""Synthetic catalogs of any size, made from the embedded catalog's real titles, for scaling benchmarks.

Item i of a synthetic catalog of `size` items:
- for i below the real catalog's size, is the real item (same title);
- above it, is a variant of real item `i mod n`: its title plus two words of another real title drawn
  with a fixed seed (e.g. "Halo 5: Guardians - Xbox One Kart Deluxe"). Titles stay real-looking, the
  vocabulary stays the real one, and term statistics grow as they would with more products.

Dense vectors for a variant are the normalised mix 0.8 x (base title's embedding) + 0.2 x (donor
title's embedding), computed from the real catalog's MiniLM embeddings instead of encoding a million
titles (about 67 minutes on 2 cores at the measured ~250 titles/s): index build and search cost are
what the scaling benchmark measures; the encoder's cost is measured once, on the real catalog.

Example:
    >>> catalog = synthetic_catalog(real, 100_000)           # doctest: +SKIP
    >>> len(catalog), catalog.titles[0] == real.titles[0]    # doctest: +SKIP
    (100000, True)
"""

from __future__ import annotations

import numpy as np

from rec_rl.data.catalog import Catalog

SEED = 0
DONOR_WEIGHT = 0.2


def donors(real_size: int, size: int) -> np.ndarray:
    """The donor row of each variant (items real_size..size-1), fixed by SEED."""
    return np.random.default_rng(SEED).integers(0, real_size, size=max(0, size - real_size))


def synthetic_catalog(real: Catalog, size: int) -> Catalog:
    """`size` items: the real ones, then variants of them as the module describes."""
    n = len(real)
    donor_rows = donors(n, size)
    words = np.random.default_rng(SEED + 1)
    items = [(real.ids[row], real.titles[row]) for row in range(min(n, size))]
    for offset, donor in enumerate(donor_rows):
        row = n + offset
        donor_words = real.titles[donor].split()
        start = int(words.integers(0, max(1, len(donor_words) - 1)))
        items.append((f"synthetic-{row}", f"{real.titles[row % n]} {' '.join(donor_words[start:start + 2])}"))
    return Catalog.from_items(items)


def synthetic_embeddings(real_embeddings: np.ndarray, size: int) -> np.ndarray:
    """Normalised float32 vectors for `synthetic_catalog(real, size)`, from the real catalog's vectors."""
    n = len(real_embeddings)
    vectors = np.empty((size, real_embeddings.shape[1]), np.float32)
    vectors[:min(n, size)] = real_embeddings[:size]
    donor_rows = donors(n, size)
    for start in range(0, len(donor_rows), 100_000):  # in chunks: a 1M x 384 temporary is 1.5 GB
        chunk = slice(start, min(start + 100_000, len(donor_rows)))
        rows = np.arange(n + chunk.start, n + chunk.stop)
        mixed = (1 - DONOR_WEIGHT) * real_embeddings[rows % n] + DONOR_WEIGHT * real_embeddings[donor_rows[chunk]]
        vectors[rows] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    return vectors
