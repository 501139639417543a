"""`recsys evaluate`: labels, baselines, the engine path, and the written report."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from conftest import STORY_ROWS, story_articles
from recsys import report
from recsys.cli import main
from recsys.evaluate import (
    Dataset, EvalConfig, evaluate_dataset, find_datasets, lexical_system, load_dataset, newest_system,
    random_system, relevant_sets, stories,
)
from recsys.settings import Settings


def write_set(folder: Path, pairs: list[dict], with_clusters: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "articles.jsonl.gz", "wt", encoding="utf-8") as f:
        for a in story_articles():
            row = a.model_dump(mode="json") | {"cluster": a.id[0] if with_clusters else None}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with gzip.open(folder / "pairs.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(p) + "\n" for p in pairs)
    return folder


PAIRS = [
    {"a": "a2", "b": "a3", "score": 1.0, "split": "dev"},
    {"a": "b1", "b": "b2", "score": 0.5, "split": "dev"},
    {"a": "b1", "b": "c1", "score": 0.25, "split": "dev"},
    {"a": "d1", "b": "d2", "score": 1.0, "split": "train"},
]


def test_relevance_from_pairs_and_clusters_by_hand() -> None:
    arts = story_articles()
    ds = Dataset("t", arts, [("a2", "a3", 1.0), ("b1", "c1", 0.25), ("b1", "b2", 0.5)])
    assert relevant_sets(ds, 0.5) == {"a2": {"a3": 1.0}, "a3": {"a2": 1.0}, "b1": {"b2": 0.5}, "b2": {"b1": 0.5}}
    clustered = Dataset("t", arts, [], {"c1": "x", "c2": "x", "c3": "y"})
    assert relevant_sets(clustered, 0.5) == {"c1": {"c2": 1.0}, "c2": {"c1": 1.0}}
    # stories without clusters: components of positive pairs
    labels = stories(Dataset("t", arts, [("a", "b", 1.0), ("b", "c", 0.9), ("d", "e", 0.1)]), 0.5)
    assert labels["a"] == labels["b"] == labels["c"] and "d" not in labels


def test_dev_split_is_the_default_and_restricts_the_pool(tmp_path: Path) -> None:
    folder = write_set(tmp_path / "set", PAIRS)
    ds = load_dataset(folder)
    assert len(ds.pairs) == 3 and {a.id for a in ds.articles} == {"a2", "a3", "b1", "b2", "c1"}
    assert len(load_dataset(folder, "train").pairs) == 1
    assert find_datasets(tmp_path) == [folder] and find_datasets(folder) == [folder]


def test_baselines_respect_replay_time() -> None:
    ds = Dataset("t", story_articles(), [])
    query = next(a for a in ds.articles if a.id == "c1")  # 2026-11-20, the newest story but for c2/c3
    # same section (sport): c3 (Nov 21, 07:00 UTC) is newer than c2 (Nov 20, 16:00 UTC)
    assert newest_system(ds, 3, as_of=False).rank(query) == ["c3", "c2"]
    # replaying c1's moment (Nov 20, 17:00 UTC): c3 does not exist yet
    assert newest_system(ds, 3, as_of=True).rank(query) == ["c2"]
    earlier = {a.id for a in ds.articles if a.published_ts < query.published_ts}
    picked = random_system(ds, 5, 0, as_of=True).rank(query)
    assert len(picked) == 5 and set(picked) <= earlier
    assert random_system(ds, 5, 0, as_of=True).rank(query) == picked  # seeded
    lex = lexical_system(ds, 3, as_of=False, text_of=lambda a: f"{a.title}. {a.text}")
    assert lex.rank(query)[0] == "c3" and lex.similarity("c1", "c3") > lex.similarity("c1", "a2")


def test_evaluate_end_to_end_on_the_tiny_model(tmp_path: Path, tiny_model_path: Path) -> None:
    folder = write_set(tmp_path / "data" / "tiny", PAIRS + [{"a": r[0], "b": r[0], "score": 1.0, "split": "x"} for r in STORY_ROWS])
    config = EvalConfig(models=(str(tiny_model_path),), k=3, split="dev", max_queries=None)
    result = evaluate_dataset(folder, config, Settings(), tmp_path / "work")
    names = [r["system"] for r in result["results"]]
    assert names == ["random", "newest_in_section", "lexical_tfidf", f"dense:{tiny_model_path}", f"hybrid:{tiny_model_path}"]
    by_name = {r["system"]: r for r in result["results"]}
    # clusters add every story mate: a2 -> {a3}, a3 -> {a2}, b1 -> {b2}, b2 -> {b1}; c1 has no mate in the dev pool
    assert result["queries"] == 4
    assert by_name["lexical_tfidf"]["recall@3"] == 1.0 and by_name["lexical_tfidf"]["mrr"] == 1.0
    assert by_name["random"]["pair_agreement"]["spearman"] is None
    assert by_name[f"hybrid:{tiny_model_path}"]["pair_agreement"]["pairs"] == 3
    written = report.write({"config": config.__dict__, "datasets": [result]}, tmp_path / "out")
    assert all(p.exists() for p in written) and len(written) == 4
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| lexical_tfidf | 1.000 | 1.000 |" in table
    json.loads((tmp_path / "out" / "results.json").read_text())  # strict JSON: no NaN


def test_cli_evaluate_and_its_errors(tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_set(tmp_path / "set", PAIRS)
    monkeypatch.setenv("RECSYS_MODEL", str(tiny_model_path))
    assert main(["evaluate", str(folder), "--k", "2", "--out", str(tmp_path / "out"), "--as-of"]) == 0
    assert (tmp_path / "out" / "results.md").exists() and (tmp_path / "out" / "set_recall_at_k.png").exists()
    assert main(["evaluate", str(tmp_path / "empty"), "--out", str(tmp_path / "o2")]) == 2
