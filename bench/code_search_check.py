"""Does the sublinear code search rank as the exhaustive one on a real-sized catalog? A sample says.

    python bench/code_search_check.py [--items 1000000] [--queries 200] [--ks 10,100,1000]
                                      [--out bench/results/code_search_check.json]

The catalog is `bench/retrieval.py`'s (the embedded one, or a synthetic one of `--items` from its real
titles, its embeddings mixed from the real ones, which `$REC_RL_CACHE` holds or gets), with its rq codes
built as the code retriever builds them. For the codes of seeded test users' last items, and for their one- and two-level prefixes (a
partial code, as a policy may write), `CodeIndex.top_k` is compared with the exhaustive
`CodeRetriever.code_scores` over the whole catalog at each k: the share of rankings with the same rows in
the same order wherever no other item's score is within 1e-6 (the float32 tie margin), and the largest
score difference rank by rank. Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from report import machine, markdown_table, write_json
from retrieval import catalog_of, prefill_embeddings, real_catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ks", default="10,100,1000")
    parser.add_argument("--out", default="bench/results/code_search_check.json")
    options = parser.parse_args()
    ks = [int(k) for k in options.ks.split(",")]
    from rec_rl.config import CodesConfig, RetrieverConfig
    from retrievers.codes import CodeRetriever

    task = real_catalog()
    test = task.split("test", options.queries, seed=0)
    with tempfile.TemporaryDirectory(prefix="rec-rl-codecheck-") as cache:
        synthetic = options.items != len(task.catalog)
        if synthetic:  # mixed from the real embeddings, which come from $REC_RL_CACHE as in bench/retrieval.py
            prefill_embeddings(options.items, Path(cache))
        retriever = CodeRetriever(catalog_of(options.items), CodesConfig(),
                                  RetrieverConfig(cache_dir=cache if synthetic else None))
        last = [task.catalog.row_of[ids[-1]] % options.items for ids in test["history_item_ids"]]
        full = [tuple(map(int, retriever.codes.codes[row])) for row in last]
        samples = {"whole code": full, "two levels": [c[:2] for c in full], "one level": [c[:1] for c in full]}
        rows = []
        for kind, codes in samples.items():
            counts = {k: {"same": 0, "worst": 0.0, "index_s": 0.0} for k in ks}
            exhaustive_s = 0.0
            for code in codes:
                started = time.perf_counter()
                (scores,) = retriever.code_scores([code])
                exhaustive_s += time.perf_counter() - started
                ranked = np.lexsort((np.arange(len(scores)), -scores))
                ascending = scores[ranked[::-1]]
                for k in ks:
                    started = time.perf_counter()
                    found, found_scores = retriever.index.top_k(code, k)
                    counts[k]["index_s"] += time.perf_counter() - started
                    expected = ranked[:k]
                    # Ranks whose score no other item comes within the float32 tie margin of must match exactly.
                    within = (np.searchsorted(ascending, scores[expected] + 1e-6, "right")
                              - np.searchsorted(ascending, scores[expected] - 1e-6, "left"))
                    untied = within == 1
                    counts[k]["same"] += bool(len(found) == len(expected) and (found[untied] == expected[untied]).all())
                    counts[k]["worst"] = max(counts[k]["worst"], float(np.abs(found_scores - scores[expected]).max()))
            for k in ks:
                rows.append({"codes": kind, "k": k, "queries": len(codes), "same ranking": counts[k]["same"] / len(codes),
                             "max score difference": counts[k]["worst"],
                             "index ms/query": 1000 * counts[k]["index_s"] / len(codes),
                             "exhaustive ms/query": 1000 * exhaustive_s / len(codes)})
                print(rows[-1], file=sys.stderr, flush=True)
    columns = ["codes", "k", "queries", "same ranking", "max score difference", "index ms/query", "exhaustive ms/query"]
    print(f"## Code search against the exhaustive search, {options.items:,} items; {machine()}\n")
    print(markdown_table(rows, columns))
    write_json(options.out, {"machine": machine(), "items": options.items, "results": rows})


if __name__ == "__main__":
    main()
