"""Retrieval cost of every backend as the catalog grows: index build, size, peak memory, queries/s.

    python bench/retrieval.py [--sizes 16859,100000,1000000] [--backends pyserini,bm25s,dense-flat,dense-hnsw,codes]
                              [--queries 1000] [--single 100] [--ks 10,100,1000]
                              [--out bench/results/retrieval.json]

Catalogs: the embedded one (16,859 items) and synthetic ones made from its real titles
(`bench/synthetic.py` says how). Queries: the last three history titles of seeded test users, joined
(free text, like a written query); the codes backend searches each user's last item's code instead.

Each (catalog, backend) cell runs in its own process, so its peak resident memory (`ru_maxrss`, Python,
libraries and the JVM included) is its own. A cell builds its index cold into a cache folder shared
by the cells of one catalog: the dense cells and codes share the catalog embeddings, which the
first of them encodes (on the embedded catalog) or which are mixed from real embeddings before the
cells run (synthetic catalogs; see bench/synthetic.py). It then searches all queries in one batch,
and the first `--single` queries one call at a time, at each k.

Also reported, from the same run: bm25s / pyserini queries/s at k=100 and the two engines' top-10
agreement (share of queries with the same ten rows in the same order). Prints markdown tables, writes
JSON and a PNG of queries/s and build time against catalog size. `index_mb` is the on-disk size of
the cache entries a backend searches with (dense and codes: the catalog embeddings included);
`encode qps` is the dense query encoder's throughput alone, the bound on dense queries/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rec_rl.experiments.launch import run_child
from report import machine, markdown_table, write_json

BACKENDS = {
    "pyserini": dict(backend="bm25", engine="pyserini"),
    "bm25s": dict(backend="bm25", engine="bm25s"),
    "dense-flat": dict(backend="dense", index="flat"),
    "dense-hnsw": dict(backend="dense", index="hnsw"),
    "codes": dict(backend="codes"),
}
# The cache entries each backend loads to search: its index size on disk.
INDEX_KINDS = {"pyserini": ["bm25-pyserini"], "bm25s": ["bm25-bm25s"], "dense-flat": ["dense-embeddings"],
               "dense-hnsw": ["dense-embeddings", "dense-hnsw"], "codes": ["dense-embeddings", "codes-rq"]}
AGREEMENT_K = 10


def index_bytes(cache: Path, backend: str) -> int:
    """On-disk size of the cache entries `backend` searches with."""
    return sum(path.stat().st_size for kind in INDEX_KINDS[backend] for entry in cache.glob(f"{kind}-*")
               for path in entry.rglob("*") if path.is_file())


def real_catalog():
    from rec_rl.config import RunConfig
    from rec_rl.data import load_task

    return load_task(RunConfig().data)


def catalog_of(size: int):
    from synthetic import synthetic_catalog

    task = real_catalog()
    return task.catalog if size == len(task.catalog) else synthetic_catalog(task.catalog, size)


def run_cell(size: int, backend: str, cache: Path, queries_file: Path, ks: list[int], single: int,
             rows_file: Path) -> dict:
    """One (catalog, backend) cell, in this (child) process."""
    from rec_rl.codes.tokens import code_text
    from rec_rl.config import CodesConfig, RetrieverConfig
    from retrievers import build_retriever

    catalog = catalog_of(size)
    data = json.loads(queries_file.read_text())
    started = time.perf_counter()
    retriever = build_retriever(RetrieverConfig(cache_dir=str(cache), **BACKENDS[backend]), catalog, CodesConfig())
    build_seconds = time.perf_counter() - started
    if backend == "codes":  # the code of each user's last item (rows beyond the catalog wrap around)
        queries = [code_text(retriever.codes.codes[row % size]) for row in data["last_rows"]]
    else:
        queries = data["text"]
    cell = {"items": size, "backend": backend, "build_s": build_seconds, "index_mb": index_bytes(cache, backend) / 2**20}
    if backend.startswith("dense"):  # the query encoder's share: dense queries/s is bounded by it
        retriever.query_vectors(queries[:8])
        started = time.perf_counter()
        retriever.query_vectors(queries)
        cell["encode qps"] = len(queries) / (time.perf_counter() - started)
    for k in ks:
        retriever.search(queries[:8], k)  # warm-up: lazy model loads, JIT, page cache
        started = time.perf_counter()
        result = retriever.search(queries, k)
        cell[f"batch qps k={k}"] = len(queries) / (time.perf_counter() - started)
        if k == 100 and backend in ("pyserini", "bm25s"):
            np.save(rows_file, result.rows[:, :AGREEMENT_K])
        started = time.perf_counter()
        for query in queries[:single]:
            retriever.search([query], k)
        cell[f"single qps k={k}"] = single / (time.perf_counter() - started)
    return cell


def prefill_embeddings(size: int, cache: Path) -> float:
    """Put the synthetic catalog's mixed embeddings in `cache`, where the dense retriever looks first."""
    from rec_rl.config import RetrieverConfig
    from rec_rl.index_cache import cached_index
    from rec_rl.embeddings import EMBEDDINGS_FILE, embedding_settings, resolve_model
    from retrievers.dense import DenseRetriever
    from synthetic import synthetic_embeddings

    started = time.perf_counter()
    task = real_catalog()
    real = DenseRetriever(task.catalog, RetrieverConfig(backend="dense")).embeddings  # the user's cache
    vectors = synthetic_embeddings(real, size)
    cached_index("dense-embeddings", catalog_of(size), embedding_settings(resolve_model(None)),
                 lambda folder: np.save(folder / EMBEDDINGS_FILE, vectors), str(cache))
    return time.perf_counter() - started


def spawn_cell(size: int, backend: str, cache: Path, queries_file: Path, options, rows_file: Path) -> dict:
    """Run a cell in a child process; add its peak memory and exit status."""
    command = [sys.executable, __file__, "--cell", str(size), backend, "--cache", str(cache), "--queries-file",
               str(queries_file), "--ks", options.ks, "--single", str(options.single), "--rows-file", str(rows_file)]
    child = run_child(command, capture=True)
    lines = [line for line in child.output.splitlines() if line.startswith("{")]
    if not lines:
        return {"items": size, "backend": backend, "error": f"exit status {child.exit_code}, no result"}
    cell = json.loads(lines[-1])
    cell["peak_rss_mb"] = child.peak_rss_mb
    if child.exit_code != 0:  # e.g. the JVM crashing at interpreter exit, after the result was printed
        cell["exit_status"] = child.exit_code
    return cell


def plot(cells: list[dict], ks: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for backend in BACKENDS:
        mine = sorted((c for c in cells if c["backend"] == backend and "error" not in c), key=lambda c: c["items"])
        if not mine:
            continue
        sizes = [c["items"] for c in mine]
        left.plot(sizes, [c["batch qps k=100"] for c in mine], marker="o", label=backend)
        right.plot(sizes, [c["build_s"] for c in mine], marker="o", label=backend)
    left.set(xscale="log", yscale="log", xlabel="catalog items", ylabel="queries/s (batch, k=100)",
             title="search throughput")
    right.set(xscale="log", yscale="log", xlabel="catalog items", ylabel="seconds", title="cold index build")
    right.axhline(600, color="grey", linestyle=":", label="10 min")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="16859,100000,1000000")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single", type=int, default=100)
    parser.add_argument("--ks", default="10,100,1000")
    parser.add_argument("--out", default="bench/results/retrieval.json")
    parser.add_argument("--cell", nargs=2, metavar=("SIZE", "BACKEND"), help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--queries-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    ks = [int(k) for k in options.ks.split(",")]
    if options.cell:
        size, backend = int(options.cell[0]), options.cell[1]
        cell = run_cell(size, backend, options.cache, options.queries_file, ks, options.single, options.rows_file)
        print(json.dumps(cell), flush=True)
        return

    from rec_rl.evaluation.baselines import last_titles_query

    task = real_catalog()
    test = task.split("test", options.queries, seed=0)
    sizes = [int(s) for s in options.sizes.split(",")]
    backends = options.backends.split(",")
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"--backends: unknown {unknown}; expected some of {sorted(BACKENDS)}")
    cells, prefill = [], {}
    with tempfile.TemporaryDirectory(prefix="rec-rl-bench-") as scratch:
        scratch = Path(scratch)
        queries_file = scratch / "queries.json"
        queries_file.write_text(json.dumps({
            "text": [last_titles_query(titles, 3) for titles in test["history_titles"]],
            "last_rows": [task.catalog.row_of[ids[-1]] for ids in test["history_item_ids"]]}))
        for size in sizes:
            cache = scratch / f"cache-{size}"
            cache.mkdir()
            if size != len(task.catalog) and {"dense-flat", "dense-hnsw", "codes"} & set(backends):
                prefill[size] = prefill_embeddings(size, cache)
            for backend in backends:
                print(f"{size:,} items, {backend} ...", file=sys.stderr, flush=True)
                rows_file = scratch / f"rows-{size}-{backend}.npy"
                cell = spawn_cell(size, backend, cache, queries_file, options, rows_file)
                if rows_file.exists():
                    cell["_rows"] = np.load(rows_file)
                cells.append(cell)
                print(json.dumps({k: v for k, v in cell.items() if k != "_rows"}), file=sys.stderr, flush=True)

    engines = []
    for size in sizes:
        pair = {c["backend"]: c for c in cells if c["items"] == size and "_rows" in c}
        if {"pyserini", "bm25s"} <= set(pair):
            lucene, numpy_bm25 = pair["pyserini"], pair["bm25s"]
            engines.append({"items": size,
                            "batch ratio k=100": numpy_bm25["batch qps k=100"] / lucene["batch qps k=100"],
                            "single ratio k=100": numpy_bm25["single qps k=100"] / lucene["single qps k=100"],
                            "top-10 agreement": float(np.mean(np.all(lucene["_rows"] == numpy_bm25["_rows"], axis=1))),
                            "build ratio": lucene["build_s"] / numpy_bm25["build_s"]})
    for cell in cells:
        cell.pop("_rows", None)

    columns = ["items", "backend", "build_s", "index_mb", "peak_rss_mb"] + [f"batch qps k={k}" for k in ks] + [
        f"single qps k={k}" for k in ks] + ["encode qps"]
    print(f"\n## Retrieval, {options.queries} queries per batch, {options.single} one at a time; {machine()}\n")
    print(markdown_table(cells, columns))
    print("\n## bm25s vs pyserini (same queries, same run)\n")
    print(markdown_table(engines, ["items", "batch ratio k=100", "single ratio k=100", "top-10 agreement",
                                   "build ratio"]))
    if prefill:
        print(f"\nSynthetic catalogs' embeddings mixed in {', '.join(f'{s:,}: {t:.0f} s' for s, t in prefill.items())} "
              "(not part of any build_s).")
    out = Path(options.out)
    write_json(out, {"queries": options.queries, "single_queries": options.single, "ks": ks, "cells": cells,
                     "engines": engines, "synthetic_embeddings_s": prefill,
                     "peak_rss_note": "ru_maxrss of the cell's process: Python, libraries, JVM and index"})
    plot(cells, ks, out.with_suffix(".png"))
    print(f"\nwritten to {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
