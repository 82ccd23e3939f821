"""Sublinear code search: the code retriever's ranking rules, without a pass over the catalog per code.

The rules (`retrievers.codes`): an item's score for a generated code is the length of the code prefix it
shares with it, plus a closeness in (0, 1) that falls with the distance between the item's embedding
and the vector the code decodes to. The top k therefore come from the items sharing the longest
prefixes, and distances are needed only where they can change the top k:

1. The catalog is sorted by code once, so the items sharing any prefix are one contiguous range of
   that order, found by binary search one level at a time (no scan).
2. The deepest range holding at least k items holds the whole top k: every item outside it shares a
   shorter prefix and scores below every item inside it. Its deeper sub-range (fewer than k items, all
   in the top k) is scored whole; the rest of the top k is the range's remaining items nearest the
   decoded vector.
3. Those come from the range's buckets one level down (items sharing one more level), visited in
   order of a lower bound on their distance (the distance to the bucket's centroid less its radius):
   a first batch of the closest-bound buckets that holds enough items, then every bucket whose bound
   is within the k-th distance found, which no unvisited bucket can beat. Small ranges are scored whole.

The results equal the exhaustive computation (`CodeRetriever.code_scores`), ties aside; a test checks
it on random catalogs. Written by hand: faiss's IVF indexes prune by distance alone and cannot rank by
shared prefix first.

Example:
    >>> index = CodeIndex(item_codes)                                  # doctest: +SKIP
    >>> rows, scores = index.top_k((12, 201, 7, 0), k=100)            # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from rec_rl.codes.build import ItemCodes

# A score is prefix length + CLOSENESS_SPAN x closeness, closeness in (0, 1]: the prefix length dominates.
CLOSENESS_SPAN = 0.999
# Ranges up to this many times the items needed are scored whole: pruning them costs more.
_SCORE_WHOLE_FACTOR = 4
# Pruning by buckets needs this many items per bucket on average at that prefix length.
_ITEMS_PER_BUCKET = 16
# Positions per chunk when bucket statistics are built (bounds the temporary copy at 1M items).
_CHUNK = 65536


class CodeIndex:
    """The catalog's codes sorted once, for `top_k` by shared prefix then decoded-vector distance.

    `score_whole`: ranges of up to this many items are scored whole, without bucket pruning (a few
    thousand distances cost less than the pruning's bookkeeping; tests set it low to exercise pruning).
    """

    def __init__(self, codes: ItemCodes, score_whole: int = 2048):
        self.codes = codes
        self.score_whole = score_whole
        self.order = np.lexsort(codes.codes.T[::-1]).astype(np.int64)  # rows sorted by code, level 0 first
        # One contiguous int64 column per level, so a range's binary search reads a view, never a copy (an
        # int32 column would be cast whole to compare with a Python int).
        self.columns = [np.ascontiguousarray(codes.codes[self.order, level], np.int64) for level in range(codes.levels)]
        self._masks: dict[bytes, dict] = {}
        # Buckets per prefix length; a length with nearly one item per bucket is not worth statistics
        # (at 1M items, three levels of 256 would need 1.5 GB of centroids): ranges there are scored whole.
        changed = np.zeros(len(self.order), bool)
        self.prunable = {}
        for length, column in enumerate(self.columns[:-1], start=1):
            changed[1:] |= column[1:] != column[:-1]
            self.prunable[length] = int(changed.sum()) + 1 <= max(1, len(self.order) // _ITEMS_PER_BUCKET)
        # What every complete code searches with, built now (index time, not the first query's): the
        # dimensions a whole code decodes to, and their buckets at each level the pruning visits.
        if len(self.order):
            _, mask = codes.decode(tuple(map(int, codes.codes[0])))
            if mask.any():
                data = self.mask_data(mask)
                for length in (length for length, ok in self.prunable.items() if ok):
                    self.buckets(data, length)

    def __len__(self) -> int:
        return len(self.order)

    def prefix_ranges(self, code: tuple[int, ...]) -> list[tuple[int, int]]:
        """`[lo, hi)` ranges of the sorted order sharing the first 0, 1, 2, ... levels of `code`, while nonempty."""
        lo, hi = 0, len(self.order)
        ranges = [(lo, hi)]
        for level, value in enumerate(code[:self.codes.levels]):
            column = self.columns[level][lo:hi]
            start, stop = np.searchsorted(column, value, "left"), np.searchsorted(column, value, "right")
            if start == stop:
                break
            lo, hi = lo + int(start), lo + int(stop)
            ranges.append((lo, hi))
        return ranges

    def mask_data(self, mask: np.ndarray) -> dict:
        """Per mask (a handful ever occur): the masked reference vectors copied in sorted order (a range's
        vectors are then one contiguous block, read 7x faster than gathered rows), their squared norms,
        the closeness scale (their mean); bucket statistics are added per level as `buckets` needs them."""
        key = mask.tobytes()
        if key not in self._masks:
            columns = np.flatnonzero(mask)
            whole = columns[-1] - columns[0] + 1 == len(columns)
            reference = self.codes.reference[:, columns[0]:columns[-1] + 1] if whole else self.codes.reference[:, columns]
            ordered = np.empty((len(self.order), len(columns)), np.float32)
            for first in range(0, len(self.order), _CHUNK):  # chunked: no second temporary copy
                ordered[first:first + _CHUNK] = reference[self.order[first:first + _CHUNK]]
            norms = (ordered.astype(np.float64) ** 2).sum(1)
            self._masks[key] = {"ordered": ordered, "norms": norms, "scale": float(norms.mean()) or 1.0,
                                "buckets": {}}
        return self._masks[key]

    def buckets(self, data: dict, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Buckets of items sharing their first `length` levels, in sorted order: (start positions, centroids,
        radii) over `data`'s dimensions; built once per mask and length."""
        if length not in data["buckets"]:
            changed = np.zeros(len(self.order), bool)
            changed[0] = True
            for column in self.columns[:length]:
                changed[1:] |= column[1:] != column[:-1]
            starts = np.flatnonzero(changed)
            ordered = data["ordered"]
            centroids = np.zeros((len(starts), ordered.shape[1]), np.float32)
            radii = np.zeros(len(starts))
            # Chunks of whole buckets: each bucket's sorted positions are contiguous, so sums are reduceat's.
            cuts = np.unique(np.r_[np.searchsorted(starts, np.arange(0, len(self.order), _CHUNK)), len(starts)])
            for first, last in zip(cuts[:-1], cuts[1:]):
                lo, hi = starts[first], starts[last] if last < len(starts) else len(self.order)
                vectors = ordered[lo:hi].astype(np.float64)
                local = starts[first:last] - lo
                centre = np.add.reduceat(vectors, local, axis=0) / np.diff(np.r_[local, hi - lo])[:, None]
                offsets = np.sqrt(((vectors - np.repeat(centre, np.diff(np.r_[local, hi - lo]), axis=0)) ** 2).sum(1))
                centroids[first:last] = centre
                radii[first:last] = np.maximum.reduceat(offsets, local)
            data["buckets"][length] = (starts, centroids, radii * (1 + 1e-6) + 1e-6)
        return data["buckets"][length]

    def distances(self, positions, vector: np.ndarray, data: dict) -> np.ndarray:
        """Squared distances to `vector` (masked) of the items at sorted `positions` (an index array or a slice)."""
        product = data["ordered"][positions] @ vector
        return np.maximum(data["norms"][positions] - 2 * product.astype(np.float64) + float(vector @ vector), 0)

    def catalog_distances(self, vector: np.ndarray, data: dict) -> np.ndarray:
        """Squared distances of every item to `vector` (masked), in catalog row order: the exhaustive search's."""
        distance = np.empty(len(self.order))
        distance[self.order] = self.distances(slice(None), vector, data)
        return distance

    def closeness(self, distance: np.ndarray, data: dict) -> np.ndarray:
        """In (0, 1], falling with distance; the catalog's mean squared norm sets the scale."""
        return 1.0 / (1.0 + distance / data["scale"])

    def top_k(self, code: tuple[int, ...], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` best catalog rows for `code` and their scores, best first (ties by row)."""
        k = min(k, len(self.order))
        ranges = self.prefix_ranges(code)
        deepest = max(level for level, (lo, hi) in enumerate(ranges) if hi - lo >= k)
        vector, mask = self.codes.decode(tuple(code))
        data = self.mask_data(mask) if mask.any() else None
        target = vector[mask]
        # The deeper sub-range (fewer than k items) is all in the top k; the rest come by distance.
        inner = ranges[deepest + 1] if deepest + 1 < len(ranges) else (ranges[deepest][0], ranges[deepest][0])
        inner_rows, inner_scores = self._scored(ranges, deepest + 1, target, data)
        rest_rows, rest_distance = self._nearest(ranges[deepest], inner, deepest, target, data, k - len(inner_rows))
        rest_scores = np.full(len(rest_rows), float(deepest))
        if data is not None:
            rest_scores += CLOSENESS_SPAN * self.closeness(rest_distance, data)
        return best_first(np.r_[inner_rows, rest_rows], np.r_[inner_scores, rest_scores], k)

    def _scored(self, ranges: list[tuple[int, int]], level: int, target: np.ndarray,
                data: dict | None) -> tuple[np.ndarray, np.ndarray]:
        """Rows of `ranges[level]` (none past the last range) and their scores: shared prefix length (`level`,
        plus one per deeper range holding the row) plus the closeness of their distance to `target`."""
        if level >= len(ranges):
            return np.empty(0, np.int64), np.empty(0)
        lo, hi = ranges[level]
        shared = np.full(hi - lo, level, np.float64)
        for start, stop in ranges[level + 1:]:
            shared[start - lo:stop - lo] += 1
        rows = self.order[lo:hi]
        if data is None:
            return rows, shared
        return rows, shared + CLOSENESS_SPAN * self.closeness(self.distances(slice(lo, hi), target, data), data)

    def _nearest(self, span: tuple[int, int], skip: tuple[int, int], level: int, target: np.ndarray,
                 data: dict | None, need: int) -> tuple[np.ndarray, np.ndarray]:
        """The `need` rows of sorted positions `span` outside `skip` nearest `target`, with their squared
        distances (any order); with nothing to measure (`data` None), the lowest rows."""
        lo, hi = span
        if need <= 0:
            return np.empty(0, np.int64), np.empty(0)
        if data is None:
            rows = np.sort(np.r_[self.order[lo:skip[0]], self.order[skip[1]:hi]])[:need]
            return rows, np.zeros(len(rows))
        if hi - lo > max(self.score_whole, _SCORE_WHOLE_FACTOR * need) and self.prunable.get(level + 1, False):
            pruned = self._pruned(span, skip, level, target, data, need)
            if pruned is not None:
                return pruned
        positions = np.r_[np.arange(lo, skip[0]), np.arange(skip[1], hi)]
        distance = np.r_[self.distances(slice(lo, skip[0]), target, data), self.distances(slice(skip[1], hi), target, data)]
        positions, distance = self._closest(positions, target, data, need, distance)
        return self.order[positions], distance

    def _pruned(self, span: tuple[int, int], skip: tuple[int, int], level: int, target: np.ndarray, data: dict,
                need: int) -> tuple[np.ndarray, np.ndarray] | None:
        """`_nearest` over the span's buckets one level down, visited by their distance bound (module docstring);
        None where the buckets to visit hold over a quarter of the span: reading the whole span as one block
        is then cheaper than gathering them (a gathered row costs 7 times a row of a block, measured)."""
        lo, hi = span
        starts, centroids, radii = self.buckets(data, level + 1)
        first, last = np.searchsorted(starts, lo), np.searchsorted(starts, hi)
        bucket_lo = starts[first:last]
        bucket_hi = np.r_[starts[first + 1:last], hi]
        keep = (bucket_lo != skip[0]) | (bucket_hi != skip[1])  # the code's own bucket is `skip`, already scored
        bucket_lo, bucket_hi = bucket_lo[keep], bucket_hi[keep]
        centre = centroids[first:last][keep]
        gap = np.maximum(np.sqrt(np.maximum(((centre - target) ** 2).sum(1), 0)) - radii[first:last][keep], 0) ** 2
        visit = np.argsort(gap, kind="stable")
        sizes = (bucket_hi - bucket_lo)[visit]
        enough = int(np.searchsorted(np.cumsum(sizes), need)) + 1  # the first buckets that hold `need` items
        budget = (hi - lo) // 4
        if sizes[:enough].sum() > budget:
            return None
        positions, distance = self._closest(spans(bucket_lo[visit[:enough]], bucket_hi[visit[:enough]]),
                                            target, data, need)
        margin = 1e-5 * data["scale"]  # float32 products: a bound this close to the k-th is visited too
        more = visit[enough:][gap[visit[enough:]] <= distance.max() + margin]
        if sizes[:enough].sum() + (bucket_hi[more] - bucket_lo[more]).sum() > budget:
            return None
        if len(more):
            extra = spans(bucket_lo[more], bucket_hi[more])
            positions, distance = self._closest(np.r_[positions, extra], target, data, need,
                                                np.r_[distance, self.distances(extra, target, data)])
        return self.order[positions], distance

    def _closest(self, positions: np.ndarray, target: np.ndarray, data: dict, need: int,
                 distance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The `need` of sorted `positions` nearest `target` (ties at the cut all kept) and their squared distances."""
        distance = self.distances(positions, target, data) if distance is None else distance
        if len(positions) > need:
            cut = np.partition(distance, need - 1)[need - 1]
            keep = distance <= cut
            positions, distance = positions[keep], distance[keep]
        return positions, distance


def spans(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """The positions of the ranges `[starts[i], stops[i])`, concatenated."""
    sizes = stops - starts
    return np.repeat(starts - np.r_[0, np.cumsum(sizes)[:-1]], sizes) + np.arange(sizes.sum())


def best_first(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top `k` of `rows` by score, best first, ties by row (as the exhaustive search breaks them)."""
    if len(rows) > k:
        cut = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = scores >= cut  # rows tied with the k-th score all stay, so the tie is broken by row below
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]
