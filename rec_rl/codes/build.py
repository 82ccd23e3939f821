"""Semantic item codes: item text embeddings quantized by faiss into a few discrete levels.

Two quantizers, as in the literature:
- `rq`: residual quantization (TIGER, MiniOneRec). Level l codes the residual left by levels < l,
  so a code prefix is a coarse-to-fine description and a partial code decodes to the sum of its
  levels' centroids.
- `opq_pq`: an OPQ rotation, then product quantization (VQ-Rec). Each level codes one slice of the
  rotated vector; a partial code decodes to the slices it names.

Items that share all quantizer levels get one more level numbering them (0, 1, ...), so every item's
code is unique and a generated code names at most one item. Codes are cached beside the catalog's
content hash (`rec_rl.index_cache`), like indexes, and rebuilt if the catalog, encoder or settings change.

The embedded catalog's codes also ship with rec-rl (`SHIPPED`, `codes.shipped`): the encoder's embeddings
differ in their last bits between processors (other SIMD kernels), k-means turns that into other codes
(measured: 14,674 distinct rq codes on one machine, 14,726 on another), and every explicit-route number
depends on the codes. The shipped ones are the same everywhere; `rec-rl build-codes --ship` writes them.

Example:
    >>> codes = item_codes(catalog, CodesConfig())      # doctest: +SKIP
    >>> codes.codes[0], codes.stats["unique_codes"]      # doctest: +SKIP
    (array([ 12, 201,   7,   0], dtype=int32), 14716)
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rec_rl.config import CodesConfig
from rec_rl.data.catalog import Catalog
from rec_rl.index_cache import MANIFEST, cached_index, file_hashes

CODES_FORMAT = 2  # bump when what the cached files mean changes (2: built with QUANTIZER_THREADS)
SHIPPED = Path(__file__).parent / "shipped"  # <method>-<levels>x<bits>/: codes, centroids, (rotation), stats, manifest
_ENCODE_CHUNK = 65_536  # rows the residual quantizer encodes at a time
_TRAIN_ROWS = 100_000  # rows the residual quantizer trains on at most
# faiss's k-means and beam search give other codes under another OpenMP thread count (measured: every one of
# 3,000 items' rq codes changed between 1 and 2 threads), so codes are always built with this many.
QUANTIZER_THREADS = 1


@contextmanager
def _faiss_threads(count: int):
    """Run faiss with `count` OpenMP threads inside the block, and restore the thread count after it."""
    import faiss  # imported where codes are built: cached codes load without faiss (bench/gpu_step.py carries none)

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@dataclass
class ItemCodes:
    """Every item's code, and what is needed to decode a (partial) code into a vector.

    `codes[row]` holds the item's quantizer levels then its de-duplicating level. `reference[row]` is
    the item's embedding in the space codes decode into (rotated for opq_pq); `centroids[l][c]` is level
    l's code c in that space, and `dims[l]` the slice of the space level l describes (all of it for rq).
    """

    method: str
    codes: np.ndarray  # int32 (n_items, levels + 1)
    codebook_sizes: list[int]  # per level, the de-duplicating level last
    centroids: list[np.ndarray]  # per quantizer level: (codebook size, slice width)
    dims: list[slice]  # per quantizer level: the slice of the reference space it codes
    reference: np.ndarray  # float32 (n_items, dim)
    stats: dict

    @property
    def levels(self) -> int:
        """Levels per code, the de-duplicating one included."""
        return self.codes.shape[1]

    def decode(self, prefix: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The vector a code prefix stands for, and the mask of the dimensions it says anything about.

        Residual levels add up; product levels fill their own slices. The de-duplicating level and codes
        outside a level's codebook say nothing about the vector and are skipped.
        """
        dim = self.reference.shape[1]
        vector, mask = np.zeros(dim, np.float32), np.zeros(dim, bool)
        for level, code in enumerate(prefix[:len(self.centroids)]):
            if 0 <= code < len(self.centroids[level]):
                vector[self.dims[level]] += self.centroids[level][code]
                mask[self.dims[level]] = True
        return vector, mask


def catalog_embeddings(catalog: Catalog, config: CodesConfig, cache_dir: str | None = None) -> np.ndarray:
    """Normalised item text embeddings from `codes.encoder`, cached like (and shared with) the dense retriever's."""
    from rec_rl.embeddings import catalog_embeddings as text_embeddings

    return text_embeddings(catalog, config.encoder, cache_dir=cache_dir)


def _settings(config: CodesConfig, embeddings: np.ndarray) -> dict:
    return {"format": CODES_FORMAT, "method": config.method, "levels": config.levels, "bits": config.codebook_bits,
            "embeddings": array_hash(embeddings)}


def array_hash(array: np.ndarray) -> str:
    """A content hash of an array (the codes depend on the exact embeddings)."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:32]


def level_slices(method: str, dim: int, levels: int) -> list[slice]:
    """The slice of the reference space each quantizer level codes: all of it (rq), or its own part (opq_pq)."""
    if method in ("rq", "random", "item_id"):
        return [slice(0, dim)] * levels
    width = dim // levels
    return [slice(l * width, (l + 1) * width) for l in range(levels)]


def quantize(embeddings: np.ndarray, config: CodesConfig) -> tuple[np.ndarray, list[np.ndarray], list[slice], np.ndarray]:
    """Train the quantizer on `embeddings`; return (codes, centroids per level, slices, rotation).

    The rotation maps embeddings into the space the centroids live in (identity for rq). The same
    embeddings and config give the same codes in any process: faiss's seeds are fixed (its defaults) and
    its thread count is pinned to `QUANTIZER_THREADS`.
    """
    with _faiss_threads(QUANTIZER_THREADS):
        return _quantize(embeddings, config)


def _quantize(embeddings: np.ndarray, config: CodesConfig) -> tuple[np.ndarray, list[np.ndarray], list[slice], np.ndarray]:
    import faiss

    n, dim = embeddings.shape
    if config.method == "item_id":
        # No quantizer: each item is its own one-token code (SASRec's item ids, as a codes-lm vocabulary), the
        # control at the other extreme from random ids: no shared prefixes at all. Decodes to nothing.
        if config.levels != 1:
            raise ValueError(f"codes.method=item_id has one level (the item's number); codes.levels is {config.levels}")
        codes = np.arange(n, dtype=np.int32)[:, None]
        return codes, [np.zeros((n, dim), np.float32)], level_slices("item_id", dim, 1), np.eye(dim, dtype=np.float32)
    size = 1 << config.codebook_bits
    if n < size:
        raise ValueError(f"codes.codebook_bits={config.codebook_bits} needs at least {size} items to train "
                         f"{size} codes per level; the catalog has {n}")
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if config.method == "random":
        # The control for semantic codes: ids of the same shape drawn at random (seeded), so items that share a
        # prefix share nothing else, and every code decodes to the zero vector (no distance credit).
        codes = np.random.default_rng(0).integers(0, size, size=(n, config.levels)).astype(np.int32)
        books = np.zeros((config.levels, size, dim), np.float32)
        return codes, list(books), level_slices("random", dim, config.levels), np.eye(dim, dtype=np.float32)
    if config.method == "rq":
        quantizer = faiss.ResidualQuantizer(dim, config.levels, config.codebook_bits)
        if n < dim:  # faiss's default progressive-dimension k-means starts from a PCA, which needs n >= dim
            quantizer.train_type = faiss.ResidualQuantizer.Train_default
        # Trained on a seeded sample of at most _TRAIN_ROWS items: the beam search keeps every training row's
        # residuals per beam (1M rows x 5 beams x 384 floats is 7.7 GB); k-means samples far fewer anyway.
        sample = x if n <= _TRAIN_ROWS else x[np.sort(np.random.default_rng(0).choice(n, _TRAIN_ROWS, replace=False))]
        quantizer.train(sample)
        # Encoded in chunks: the beam search's buffers grow with the rows encoded at once (1M rows ran out of 24 GiB).
        codes = np.concatenate([_unpack(quantizer.compute_codes(x[start:start + _ENCODE_CHUNK]), config.levels,
                                        config.codebook_bits) for start in range(0, n, _ENCODE_CHUNK)])
        books = faiss.vector_to_array(quantizer.codebooks).reshape(config.levels, size, dim)
        return codes, list(books), level_slices("rq", dim, config.levels), np.eye(dim, dtype=np.float32)
    if config.method != "opq_pq":
        raise ValueError(f"codes.method is {config.method!r}; expected 'rq', 'opq_pq', 'random' or 'item_id'")
    if dim % config.levels:
        raise ValueError(f"codes.levels={config.levels} must divide the embedding size {dim} for opq_pq")
    if n < dim:  # faiss's OPQ training crashes the process (segfault) below this
        raise ValueError(f"codes.method=opq_pq needs at least as many items as embedding dimensions ({dim}); "
                         f"the catalog has {n}: use codes.method=rq")
    rotation = faiss.OPQMatrix(dim, config.levels)
    # OPQ alternates rotation and PQ training; it trains the PQ given here (its own default is 8 bits).
    quantizer = faiss.ProductQuantizer(dim, config.levels, config.codebook_bits)
    rotation.pq = quantizer
    rotation.train(x)
    rotated = rotation.apply(x)
    codes = _unpack(quantizer.compute_codes(rotated), config.levels, config.codebook_bits)
    width = dim // config.levels
    books = faiss.vector_to_array(quantizer.centroids).reshape(config.levels, size, width)
    matrix = faiss.vector_to_array(rotation.A).reshape(dim, dim)
    return codes, list(books), level_slices("opq_pq", dim, config.levels), matrix


def _unpack(packed: np.ndarray, levels: int, bits: int) -> np.ndarray:
    """faiss's packed codes as one int per level (bit-packed little-endian, as faiss's BitstringReader)."""
    as_bits = np.unpackbits(packed, axis=1, bitorder="little")[:, :levels * bits].reshape(len(packed), levels, bits)
    return (as_bits.astype(np.int64) << np.arange(bits)).sum(axis=2).astype(np.int32)


def deduplicate(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Append a level numbering the items that share a code (in catalog order); return it and the largest group."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    suffix = np.zeros(len(codes), np.int32)
    seen: dict[int, int] = {}
    for row, group in enumerate(inverse):
        suffix[row] = seen.get(group, 0)
        seen[group] = suffix[row] + 1
    return np.column_stack([codes, suffix]).astype(np.int32), int(counts.max())


def code_stats(codes: np.ndarray, largest_group: int, sizes: list[int], seconds: float) -> dict:
    """Unique codes before de-duplication, the largest shared code, and codebook use per level."""
    quantized = codes[:, :-1]
    return {
        "items": int(len(codes)),
        "unique_codes": int(len(np.unique(quantized, axis=0))),
        "largest_collision_group": largest_group,
        "codebook_utilisation": [round(len(np.unique(codes[:, l])) / sizes[l], 4) for l in range(len(sizes))],
        "codebook_sizes": sizes,
        "unique_after_dedup": int(len(np.unique(codes, axis=0))),
        "build_seconds": round(seconds, 2),
    }


def _shipped_key(catalog: Catalog, config: CodesConfig) -> dict:
    """What shipped codes must have been made from to stand for a build under `config` on `catalog`."""
    return {"format": CODES_FORMAT, "catalog_hash": catalog.content_hash, "encoder": config.encoder,
            "method": config.method, "levels": config.levels, "bits": config.codebook_bits}


def _shipped_folder(config: CodesConfig, root: Path | None) -> Path:
    """Where the shipped codes made under `config` live, under `root` (default `SHIPPED`)."""
    return (root or SHIPPED) / f"{config.method}-{config.levels}x{config.codebook_bits}"


def shipped_codes(catalog: Catalog, config: CodesConfig, root: Path | None = None) -> Path | None:
    """The folder of the codes rec-rl ships for `catalog` under `config` (under `root`, default `SHIPPED`),
    or None when it ships none for them. A shipped file that does not match its manifest is an error."""
    folder = _shipped_folder(config, root)
    if not (folder / MANIFEST).is_file():
        return None
    manifest = json.loads((folder / MANIFEST).read_text())
    if any(manifest.get(key) != value for key, value in _shipped_key(catalog, config).items()):
        return None  # made for another catalog, encoder or format
    if file_hashes(folder) != manifest["files"]:
        raise RuntimeError(f"{folder}: the shipped codes' files do not match {folder / MANIFEST}; reinstall rec-rl "
                           "or set codes.shipped=false to build the codes on this machine")
    return folder


def ship_codes(catalog: Catalog, config: CodesConfig, cache_dir: str | None = None, root: Path | None = None) -> Path:
    """Build the codes on this machine (or take them from its cache) and write them as the shipped ones
    (`rec-rl build-codes --ship`); returns their folder under `root` (default `SHIPPED`)."""
    import dataclasses
    import platform
    import shutil

    built = _codes_folder(catalog, dataclasses.replace(config, shipped=False), cache_dir)
    folder = _shipped_folder(config, root)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    names = ["codes.npy", "centroids.npy", "stats.json"] + (["rotation.npy"] if config.method == "opq_pq" else [])
    for name in names:
        shutil.copyfile(built / name, folder / name)
    manifest = {**_shipped_key(catalog, config), "codes_hash": array_hash(np.load(folder / "codes.npy")),
                "built_on": f"{platform.processor() or platform.machine()}", "files": file_hashes(folder)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def _codes_folder(catalog: Catalog, config: CodesConfig, cache_dir: str | None = None,
                  embeddings: np.ndarray | None = None) -> Path:
    """The folder holding the codes under `config`: the shipped one, or the cache entry (built if missing)."""
    shipped = shipped_codes(catalog, config) if config.shipped else None
    if shipped is not None:
        return shipped
    embeddings = catalog_embeddings(catalog, config, cache_dir) if embeddings is None else embeddings

    def build(folder: Path) -> None:
        started = time.perf_counter()
        codes, centroids, dims, rotation = quantize(embeddings, config)
        codes, largest = deduplicate(codes)
        sizes = [len(catalog) if config.method == "item_id" else 1 << config.codebook_bits] * config.levels + [largest]
        np.save(folder / "codes.npy", codes)
        np.save(folder / "centroids.npy", np.stack(centroids))
        np.save(folder / "rotation.npy", rotation)
        stats = code_stats(codes, largest, sizes, time.perf_counter() - started)
        (folder / "stats.json").write_text(json.dumps(stats, indent=2))

    return cached_index(f"codes-{config.method}", catalog, _settings(config, embeddings), build, cache_dir)


def item_codes(catalog: Catalog, config: CodesConfig, cache_dir: str | None = None) -> ItemCodes:
    """The catalog's codes under `config`: the shipped ones (`codes.shipped`), else from the cache, or built
    (embedding + quantizer) into it. The reference vectors are always this machine's embeddings."""
    embeddings = catalog_embeddings(catalog, config, cache_dir)
    folder = _codes_folder(catalog, config, cache_dir, embeddings)
    codes = np.load(folder / "codes.npy")
    centroids = list(np.load(folder / "centroids.npy"))
    stats = json.loads((folder / "stats.json").read_text()) | {"shipped": folder.parent == SHIPPED}
    # rq's (and random's) rotation is the identity: the reference space is the embeddings themselves, no copy.
    reference = embeddings if config.method in ("rq", "random", "item_id") else \
        np.ascontiguousarray(embeddings @ np.load(folder / "rotation.npy").T, dtype=np.float32)
    return ItemCodes(config.method, codes, stats["codebook_sizes"], centroids,
                     level_slices(config.method, embeddings.shape[1], config.levels), reference, stats)
