"""Data loading: the embedded dataset, the two task kinds, and file:line errors on bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rec_rl.config import load_config
from rec_rl.data import EMBEDDED_DATASET, Catalog, DataError, load_task
from tests.conftest import FIXTURES, write_jsonl


def test_embedded_dataset_matches_its_readme():
    task = load_task(load_config().data)
    assert len(task.catalog) == 16859
    # Every user trains; 1,000 of them validate and the other 18,000 test (data.user_split=disjoint).
    assert {name: len(rows) for name, rows in task.splits.items()} == {"train": 19000, "valid": 1000, "test": 18000}
    assert not set(task.splits["valid"]["row_id"]) & set(task.splits["test"]["row_id"])
    stats = json.loads((EMBEDDED_DATASET / "stats.json").read_text())
    interactions = sum(len(h) + 1 for h in task.known_sequences["test"])
    assert interactions == stats["main"]["interactions"]
    assert "License" in (EMBEDDED_DATASET / "README.md").read_text()


def test_leave_one_out_split(tiny_sequential: Path):
    # user_split=shared keeps every user in every split, so user u3's three targets can be read side by side.
    task = load_task(load_config(None, [f"data.path={tiny_sequential}", "data.history_len=2",
                                        "data.user_split=shared"]).data)
    test, valid, train = (task.splits[name][2] for name in ("test", "valid", "train"))  # user u3: 6 7 8 0 1
    assert (test["history_item_ids"], test["target_item_ids"]) == (["6", "7", "8", "0"], ["1"])
    assert (valid["history_item_ids"], valid["target_item_ids"]) == (["6", "7", "8"], ["0"])
    assert (train["history_item_ids"], train["target_item_ids"]) == (["6", "7"], ["8"])
    assert test["history_titles"] == ["The Last of Us Remastered - PlayStation 4", "Super Mario Odyssey - Nintendo Switch"]
    assert test["exclude_item_ids"] == test["history_item_ids"] and test["gains"] == [1.0]
    # Baselines of the test split may count everything before the test targets, and nothing after.
    assert task.known_sequences["test"][2] == ["6", "7", "8", "0"]
    kept = load_task(load_config(None, [f"data.path={tiny_sequential}", "data.drop_history=false"]).data)
    assert kept.splits["test"][0]["exclude_item_ids"] == []


def test_validation_users_are_disjoint_from_test_users(tiny_sequential: Path):
    task = load_task(load_config(None, [f"data.path={tiny_sequential}", "data.valid_users=2"]).data)
    valid, test = set(task.splits["valid"]["row_id"]), set(task.splits["test"]["row_id"])
    assert len(valid) == 2 and len(test) == 3 and not valid & test
    assert valid | test == set(task.splits["train"]["row_id"]) == {"u1", "u2", "u3", "u4", "u5"}
    # The partition depends on the user ids and split_seed alone: reversing the file changes nothing.
    lines = (tiny_sequential / "sequences.jsonl").read_text().splitlines()
    (tiny_sequential / "sequences.jsonl").write_text("\n".join(lines[::-1]) + "\n")
    again = load_task(load_config(None, [f"data.path={tiny_sequential}", "data.valid_users=2"]).data)
    assert set(again.splits["valid"]["row_id"]) == valid
    other = load_task(load_config(None, [f"data.path={tiny_sequential}", "data.valid_users=2", "data.split_seed=1"]).data)
    assert set(other.splits["valid"]["row_id"]) != valid, "another split_seed picks other validation users"
    # Default: a tenth of the users, at least one.
    assert len(load_task(load_config(None, [f"data.path={tiny_sequential}"]).data).splits["valid"]) == 1
    with pytest.raises(DataError, match="data.valid_users=5 leaves no test users"):
        load_task(load_config(None, [f"data.path={tiny_sequential}", "data.valid_users=5"]).data)


def test_compressed_files_are_found(tiny_sequential: Path):
    import gzip

    items = tiny_sequential / "items.jsonl"
    (tiny_sequential / "items.jsonl.gz").write_bytes(gzip.compress(items.read_bytes()))
    items.unlink()
    assert len(load_task(load_config(None, [f"data.path={tiny_sequential}"]).data).catalog) == 10


@pytest.mark.parametrize("file, line, expected", [
    ("items.jsonl", '{"title": "no id"}', r"items.jsonl:11: missing 'item_id'"),
    ("items.jsonl", '{"item_id": 3, "title": "again"}', r"items.jsonl:11: duplicate item_id '3' \(first at line 4\)"),
    ("items.jsonl", '{"item_id": 99', r"items.jsonl:11: invalid JSON"),
    ("sequences.jsonl", '{"user_id": "u9", "item_ids": [1, 2, 777, 3]}', r"sequences.jsonl:6: user 'u9' has item '777'"),
    ("sequences.jsonl", '{"user_id": "u1", "item_ids": [1, 2, 3, 4]}', r"sequences.jsonl:6: duplicate user_id 'u1'"),
    ("sequences.jsonl", '{"item_ids": [1, 2, 3, 4]}', r"sequences.jsonl:6: missing 'user_id'"),
    ("sequences.jsonl", '{"user_id": "u9", "item_ids": [1, 2]}', r"sequences.jsonl:6: user 'u9' has 2 items"),
    ("sequences.jsonl", '{"user_id": "u9", "item_ids": "1 2 3 4"}', r"sequences.jsonl:6: 'item_ids' must be a list, got str"),
    ("sequences.jsonl", '[1, 2, 3, 4]', r"sequences.jsonl:6: expected a JSON object, got list"),
    ("items.jsonl", '{"item_id": 11, "title": "  "}', r"items.jsonl:11: missing 'title'"),
])
def test_bad_rows_name_file_and_line(tiny_sequential: Path, file: str, line: str, expected: str):
    with (tiny_sequential / file).open("a") as handle:
        handle.write(line + "\n")
    with pytest.raises(DataError, match=expected):
        load_task(load_config(None, [f"data.path={tiny_sequential}"]).data)


@pytest.mark.parametrize("file, expected", [("items.jsonl", "items.jsonl: no items"),
                                            ("sequences.jsonl", "sequences.jsonl: no sequences")])
def test_empty_files_are_named(tiny_sequential: Path, file: str, expected: str):
    (tiny_sequential / file).write_text("\n")
    with pytest.raises(DataError, match=expected):
        load_task(load_config(None, [f"data.path={tiny_sequential}"]).data)


def test_missing_folder_names_the_key(tmp_path: Path):
    with pytest.raises(DataError, match="data.path"):
        load_task(load_config(None, [f"data.path={tmp_path / 'nowhere'}"]).data)


def _esci(folder: Path, *overrides: str):
    return load_task(load_config(None, ["data.kind=esci", f"data.path={folder}",
                                        "data.examples_file=esci_small.jsonl", *overrides]).data)


def test_esci_fixture_gains_and_splits():
    task = _esci(FIXTURES, "data.locale=us", "data.valid_fraction=0.0", "data.text_keys=[product_description]")
    assert len(task.catalog) == 8  # the German product is filtered out by locale
    assert "Ergonomic mouse" in task.catalog.texts[task.catalog.row_of["P1"]]
    assert task.catalog.titles[task.catalog.row_of["P1"]] == "Wireless Gaming Mouse RGB"
    train = {row["row_id"]: row for row in task.splits["train"]}
    assert set(train) == {"q1", "q2", "q5"}  # q7 is judged only Irrelevant: no row
    assert train["q1"]["query"] == "wireless mouse"
    assert dict(zip(train["q1"]["target_item_ids"], train["q1"]["gains"])) == pytest.approx({"P1": 1.0, "P6": 1.0, "P3": 0.01})
    test = {row["row_id"]: row for row in task.splits["test"]}
    assert dict(zip(test["q6"]["target_item_ids"], test["q6"]["gains"])) == pytest.approx({"P3": 1.0, "P7": 0.1})
    assert task.known_sequences == {} and test["q3"]["exclude_item_ids"] == []


def test_esci_valid_is_carved_from_train():
    task = _esci(FIXTURES, "data.valid_fraction=1.0")
    assert len(task.splits["train"]) == 0 and len(task.splits["valid"]) == 3


def test_esci_separate_products_file_and_parquet(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [json.loads(line) for line in (FIXTURES / "esci_small.jsonl").read_text().splitlines()]
    products = {r["product_id"]: {"product_id": r["product_id"], "product_title": r["product_title"]} for r in records}
    pq.write_table(pa.Table.from_pylist(list(products.values())), tmp_path / "products.parquet")
    examples = [{k: r[k] for k in ("query_id", "query", "product_id", "esci_label", "split")} for r in records]
    pq.write_table(pa.Table.from_pylist(examples), tmp_path / "examples.parquet")
    task = load_task(load_config(None, ["data.kind=esci", f"data.path={tmp_path}", "data.examples_file=examples.parquet",
                                        "data.products_file=products.parquet"]).data)
    assert len(task.catalog) == 9 and len(task.splits["test"]) == 4


@pytest.mark.parametrize("record, expected", [
    ({"query_id": "q1", "query": "x", "product_id": "P1", "esci_label": "Q", "product_title": "t"}, "esci_label 'Q'"),
    ({"query_id": "q1", "query": "x", "esci_label": "E", "product_title": "t"}, "missing 'product_id'"),
    ({"query_id": "q1", "query": "x", "product_id": "P1", "esci_label": "E", "product_title": "t"}, "query 'q1' judges product 'P1' twice"),
    ({"query_id": "q9", "query": "x", "product_id": "P1", "esci_label": "E", "product_title": "t", "split": "dev"},
     "split 'dev' is not 'train' or 'test'"),
])
def test_esci_bad_rows_name_file_and_line(tmp_path: Path, record: dict, expected: str):
    rows = [json.loads(line) for line in (FIXTURES / "esci_small.jsonl").read_text().splitlines()]
    write_jsonl(tmp_path / "esci_small.jsonl", rows + [record])
    with pytest.raises(DataError, match=rf"esci_small.jsonl:17: {expected}"):
        _esci(tmp_path)


def test_catalog_hash_depends_on_content():
    a = Catalog.from_items([("1", "Halo"), ("2", "Zelda")])
    assert a.content_hash == Catalog.from_items([("1", "Halo"), ("2", "Zelda")]).content_hash
    assert a.content_hash != Catalog.from_items([("1", "Halo"), ("2", "Zelda II")]).content_hash
    with pytest.raises(DataError, match="duplicate"):
        Catalog.from_items([("1", "Halo"), ("1", "Zelda")])


def _dcg(gains: list[float]) -> float:
    import math

    return sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))


@pytest.mark.parametrize("gain, to_gain", [("linear", lambda g: float(g)), ("exponential", lambda g: 2.0 ** g - 1)])
def test_graded_search_data_loads_and_scores_as_a_hand_computation(tmp_path: Path, gain, to_gain):
    """BM25 and dense through config alone; NDCG and Recall (grade >= 2) recomputed by hand from each ranking."""
    from rec_rl.evaluation.run import run_eval
    from retrievers import build_retriever

    folder = FIXTURES / "search_small"
    overrides = ["data.kind=search", f"data.path={folder}", f"data.gain={gain}", "data.relevant_min_grade=2",
                 "retriever.engine=bm25s", "eval.ks=[3]", "eval.bootstrap=20", f"eval.output_dir={tmp_path}",
                 "eval.baselines=[bm25, dense]"]
    config = load_config(None, overrides)
    task = load_task(config.data)
    test = task.splits["test"]
    assert list(test["row_id"]) == ["q1", "q2", "q5"] and len(task.splits["valid"]) == 1
    q1 = test[0]
    assert q1["target_item_ids"] == ["1", "2", "0"], "grade-0 judgments are no targets"
    assert q1["gains"] == [to_gain(3), to_gain(2), to_gain(1)]
    run_eval(config)
    systems = {s["name"]: s for s in json.loads((tmp_path / "metrics.json").read_text())["systems"]}
    grades = {"q1": {"1": 3, "2": 2, "0": 1}, "q2": {"4": 3, "3": 1}, "q5": {"2": 1}}
    for backend, name in (("bm25", "bm25[bm25s] query"), ("dense", "dense[flat] query")):
        retriever = build_retriever(load_config(None, [*overrides, f"retriever.backend={backend}"]).retriever,
                                    task.catalog)
        ndcgs, recalls = [], []
        for row_id, ranked in zip(test["row_id"], retriever.search(list(test["query"]), k=3).item_ids(task.catalog)):
            judged = grades[row_id]
            ideal = _dcg(sorted((to_gain(g) for g in judged.values()), reverse=True)[:3])
            ndcgs.append(_dcg([to_gain(judged.get(item, 0)) for item in ranked]) / ideal)
            relevant = {item for item, g in judged.items() if g >= 2}
            recalls.append(len(relevant & set(ranked)) / len(relevant) if relevant else 0.0)
        assert systems[name]["metrics"]["ndcg@3"]["mean"] == pytest.approx(sum(ndcgs) / 3)
        assert systems[name]["metrics"]["recall@3"]["mean"] == pytest.approx(sum(recalls) / 3)


@pytest.mark.parametrize("line, message", [
    ('{"query_id": "q1", "item_id": 1, "grade": "high"}', r"judgments.jsonl:10: grade 'high' is not a finite number"),
    ('{"query_id": "q1", "item_id": 99, "grade": 1}', r"judgments.jsonl:10: item_id '99' is not in the catalog"),
    ('{"query_id": "q9", "item_id": 1, "grade": 1}', r"judgments.jsonl:10: query_id 'q9' is not in queries.jsonl"),
    ('{"query_id": "q1", "item_id": 1, "grade": 2}', r"judgments.jsonl:10: query 'q1' judges item '1' twice"),
])
def test_bad_judgments_name_file_and_line(tmp_path: Path, line: str, message: str):
    import shutil

    folder = tmp_path / "search"
    shutil.copytree(FIXTURES / "search_small", folder)
    with open(folder / "judgments.jsonl", "a") as handle:
        handle.write(line + "\n")
    with pytest.raises(DataError, match=message):
        load_task(load_config(None, ["data.kind=search", f"data.path={folder}"]).data)
