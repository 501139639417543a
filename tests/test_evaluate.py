"""`recsys evaluate`: labels, baselines, the engine path, and the written report."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from conftest import STORY_ROWS, story_articles
from recsys import report
from recsys.cli import main
from recsys.baselines import Shown, bm25_system, engine_system, words
from recsys.evaluate import (
    Dataset, EvalConfig, evaluate_dataset, find_datasets, load_dataset, newest_system, random_system,
    relevant_sets, score_system, stories, tfidf_system,
)
from recsys.story_eval import filler_labels, story_judge
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
    assert newest_system(ds.articles, 3, as_of=False).rank(query).ids == ["c3", "c2"]
    # replaying c1's moment (Nov 20, 17:00 UTC): c3 does not exist yet
    assert newest_system(ds.articles, 3, as_of=True).rank(query).ids == ["c2"]
    earlier = {a.id for a in ds.articles if a.published_ts < query.published_ts}
    picked = random_system(ds.articles, 5, 0, as_of=True).rank(query).ids
    assert len(picked) == 5 and set(picked) <= earlier
    assert random_system(ds.articles, 5, 0, as_of=True).rank(query).ids == picked  # seeded
    lex = tfidf_system(ds.articles, 3, as_of=False, text_of=lambda a: f"{a.title}. {a.text}")
    assert lex.rank(query).ids[0] == "c3" and lex.similarity("c1", "c3") > lex.similarity("c1", "a2")


def test_bm25_on_cyrillic_words() -> None:
    assert words("Львів, СИХІВ! tram-line 12") == ["львів", "сихів", "tram", "line", "12"]
    ds = Dataset("t", story_articles(), [])
    bm25 = bm25_system(ds.articles, 3, as_of=False, text_of=lambda a: f"{a.title}. {a.text}")
    query = next(a for a in ds.articles if a.id == "c1")
    assert bm25.rank(query).ids[0] == "c3" and query.id not in bm25.rank(query).ids
    assert bm25.similarity("c1", "c3") > bm25.similarity("c1", "a2") == 0.0
    replay = bm25_system(ds.articles, 3, as_of=True, text_of=lambda a: a.title).rank(query).ids
    assert "c3" not in replay  # published after c1


class FakeEngine:
    """Answers every query with a fixed block: shown ids, what collapsed into them, and reasons."""

    def __init__(self, articles: list, ids: list[str], collapsed: dict, reasons: list[str]) -> None:
        self.by_id = {a.id: a for a in articles}
        self.ids, self.collapsed, self.reasons = ids, collapsed, reasons

    def related_to_article(self, article_id: str, filters):  # noqa: ANN001, ANN201
        from types import SimpleNamespace

        items = [(self.by_id[i], 1.0) for i in self.ids[: filters.limit]]
        return SimpleNamespace(items=items, reasons=self.reasons[: filters.limit], collapsed=self.collapsed)

    def similarity(self, a: str, b: str) -> float:
        return 0.0


def test_story_level_scores_of_a_collapsing_engine() -> None:
    arts = story_articles()
    clusters = {a.id: a.id[0] for a in arts}
    ds = Dataset("t", arts, [], clusters)
    relevant = relevant_sets(ds, 0.5)
    # for query a1 the block shows a2 (a3 and b4 collapsed into it: one right, one wrong), b1 (filler), c1 (fill)
    fake = FakeEngine(arts, ["a2", "b1", "c1"], {"a2": ("a3", "b4")}, ["related", "related", "fill"])
    system = engine_system("served", fake, 3, "any", as_of=False)
    assert system.rank(arts[0]) == Shown(["a2", "b1", "c1"], {"a2": ("a3", "b4")}, ["related", "related", "fill"])
    judge = story_judge(ds, 0.75)
    result = score_system(ds, system, ["a1"], relevant, 3, judge, stories(ds, 0.75))
    # relevant to a1: a2, a3, a4. Item level: a2 only -> 1/3; story level: a2 and a3 (collapsed) -> 2/3
    assert result["recall@3"] == pytest.approx(1 / 3) and result["story_recall@3"] == pytest.approx(2 / 3)
    assert result["mrr"] == 1.0 and result["story_mrr"] == 1.0
    assert result["filler_rate"] == pytest.approx(2 / 3)  # b1 and c1 are other clusters, a2 is a1's story
    assert result["fill_share"] == pytest.approx(1 / 3)
    assert result["collapse_precision"] == pytest.approx(0.5) and result["collapsed_items"] == 2


def test_story_judge_and_filler_labels_on_pairs() -> None:
    arts = story_articles()
    ds = Dataset("p", arts, [("a1", "a2", 1.0), ("a2", "a3", 0.8), ("a1", "b1", 0.6), ("a1", "c1", 0.1)])
    judge = story_judge(ds, 0.75)
    assert judge("a1", "a2") is True and judge("a1", "a3") is True  # a3 joins through a2
    assert judge("a1", "b1") is False and judge("a1", "c1") is False and judge("a1", "d1") is None
    rel = relevant_sets(ds, 0.5)["a1"]  # a2, b1
    # a2 story, b1 labelled related, c1 labelled below 0.5 (filler), d1 unknown (left out)
    assert filler_labels("a1", ["a2", "b1", "c1", "d1"], rel, judge) == {"a2": True, "b1": True, "c1": False}


def test_a_jsonl_file_is_a_dataset() -> None:
    from recsys.cli import sample_corpus

    ds = load_dataset(sample_corpus())
    assert ds.name == "sample_articles" and len(ds.articles) == len(ds.clusters) > 100 and not ds.pairs
    assert find_datasets(sample_corpus()) == [sample_corpus()]


def test_evaluate_end_to_end_on_the_tiny_model(tmp_path: Path, tiny_model_path: Path) -> None:
    folder = write_set(tmp_path / "data" / "tiny", PAIRS + [{"a": r[0], "b": r[0], "score": 1.0, "split": "x"} for r in STORY_ROWS])
    config = EvalConfig(models=(str(tiny_model_path),), k=3, split="dev", max_queries=None)
    result = evaluate_dataset(folder, config, Settings(), tmp_path / "work")
    names = [r["system"] for r in result["results"]]
    assert names == ["random", "newest_in_section", "tfidf", "bm25", f"dense:{tiny_model_path}",
                     f"hybrid:{tiny_model_path}", "served", "served:nocollapse"]
    by_name = {r["system"]: r for r in result["results"]}
    # clusters add every story mate: a2 -> {a3}, a3 -> {a2}, b1 -> {b2}, b2 -> {b1}; c1 has no mate in the dev pool
    assert result["queries"] == 4
    assert by_name["tfidf"]["recall@3"] == 1.0 and by_name["tfidf"]["mrr"] == 1.0
    served = by_name["served"]
    assert served["story_recall@3"] >= served["recall@3"] and served["fill_share"] is not None
    assert by_name["served:nocollapse"]["collapsed_items"] == 0 and by_name["tfidf"]["fill_share"] is None
    assert by_name["random"]["pair_agreement"]["spearman"] is None
    assert by_name[f"hybrid:{tiny_model_path}"]["pair_agreement"]["pairs"] == 3
    written = report.write({"config": config.__dict__, "datasets": [result]}, tmp_path / "out")
    assert all(p.exists() for p in written) and len(written) == 5
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| tfidf | 1.000 | 1.000 |" in table and "story-R@3" in table
    json.loads((tmp_path / "out" / "results.json").read_text())  # strict JSON: no NaN
    # a cached build of another model under the same name (a new revision of a built-in) is rebuilt, not an error
    for manifest in (tmp_path / "work").glob("tiny/*/index/builds/*/manifest.json"):
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "model": "an earlier revision"}))
    again = evaluate_dataset(folder, config, Settings(), tmp_path / "work")
    assert {r["system"]: r["mrr"] for r in again["results"]} == {r["system"]: r["mrr"] for r in result["results"]}


def test_cli_evaluate_and_its_errors(tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_set(tmp_path / "set", PAIRS)
    monkeypatch.setenv("RECSYS_MODEL", str(tiny_model_path))
    args = ["evaluate", str(folder), "--k", "2", "--out", str(tmp_path / "out"), "--as-of", "--sample",
            "--max-queries", "3"]
    assert main(args) == 0
    assert (tmp_path / "out" / "results.md").exists() and (tmp_path / "out" / "set_recall_at_k.png").exists()
    assert (tmp_path / "out" / "set_story.png").exists() and (tmp_path / "out" / "sample_articles_story.png").exists()
    sample = json.loads((tmp_path / "out" / "results.json").read_text())["datasets"][-1]
    assert sample["dataset"] == "sample_articles" and sample["same_story_decision"][str(tiny_model_path)]["pairs"] > 0
    assert main(["evaluate", str(tmp_path / "empty"), "--out", str(tmp_path / "o2")]) == 2
