"""`recsys calibrate`: threshold fitting on hand-made scores, and one run on a tiny labelled set."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from conftest import story_articles
from recsys import calibration_fit as cf
from recsys.calibrate import story_mrr
from recsys.calibration_data import Encoded, related_labels, story_labels
from recsys.cli import main
from recsys.datasets import Dataset
from recsys.recommend import Ranking
from recsys.settings import Settings
from recsys.story_rule import relations
from recsys.thresholds import CALIBRATED, ranking_from


def test_threshold_at_precision_takes_the_lowest_admissible_score() -> None:
    scores, gold = [0.9, 0.8, 0.7, 0.6, 0.5], [1, 1, 0, 1, 0]
    # precision at each cut: 0.9 -> 1/1, 0.8 -> 2/2, 0.7 -> 2/3, 0.6 -> 3/4, 0.5 -> 3/5
    fit = cf.threshold_at_precision(scores, gold, 0.75)
    assert fit.threshold == pytest.approx(0.55)  # halfway between 0.6 (accepted) and 0.5 (not)
    assert (fit.precision, fit.recall, fit.reached) == (pytest.approx(0.75), pytest.approx(1.0), True)
    fit = cf.threshold_at_precision(scores, gold, 0.9)  # only 0.9 and 0.8 qualify -> cut below 0.8
    assert fit.threshold == pytest.approx(0.75) and fit.recall == pytest.approx(2 / 3)


def test_threshold_at_precision_out_of_reach_and_with_forced_items() -> None:
    # the top score is a negative and the only positive is last: 0/1, then 1/2 -> never 0.95
    fit = cf.threshold_at_precision([0.9, 0.1], [0, 1], 0.95)
    assert fit.threshold == cf.NEVER and not fit.reached
    # item 3 is accepted by another rule (forced): cuts are 0.9 -> 2/2, 0.5 -> 2/3
    fit = cf.threshold_at_precision([0.9, 0.5, 0.1], [1, 0, 1], 0.9, forced=[False, False, True])
    assert fit.threshold == pytest.approx(0.7) and fit.precision == 1.0 and fit.recall == 1.0


def test_fit_story_rule_rejects_a_dense_cut_that_fails_same_language_pairs() -> None:
    dense = [0.80, 0.60, 0.50, 0.70, 0.65]
    mixed = [0.40, 0.30, 0.25, 0.40, 0.70]
    gold = [True, True, False, False, True]
    cross = [True, True, True, False, False]
    # dense 0.6 is perfect on cross-language pairs but also takes pair 3 (same language, different story):
    # 3 of 4 right overall -> rejected at precision 1. Dense 0.8 takes pair 0; the blend cut 0.55 adds pair 4.
    dense_fit, whole = cf.fit_story_rule(dense, mixed, gold, cross, 1.0)
    assert dense_fit.threshold == pytest.approx(0.8)
    assert (dense_fit.precision, dense_fit.recall) == (1.0, 0.5)  # on the cross-language pairs
    assert whole.threshold == pytest.approx(0.55) and whole.recall == pytest.approx(2 / 3) and whole.precision == 1.0


def test_best_f1_percentile_and_first_hit() -> None:
    # cuts: 0.9 -> F1 2/3, 0.8 -> 1/2, 0.7 -> 4/5, 0.6 -> 2/3: best at 0.7, threshold halfway to 0.6
    fit = cf.threshold_best_f1([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    assert fit.threshold == pytest.approx(0.65) and fit.precision == pytest.approx(2 / 3) and fit.recall == 1.0
    assert not cf.threshold_best_f1([0.5], [0]).reached
    assert cf.low_percentile([0.0, 1.0], 1.0) == pytest.approx(0.01)
    assert np.isnan(cf.low_percentile([], 1.0))
    assert cf.first_hit_rr([0.1, 0.9, 0.5], [True, False, True]) == pytest.approx(0.5)
    assert cf.first_hit_rr([0.1, 0.9], [False, False]) == 0.0


def test_floor_at_recall_is_the_highest_threshold_keeping_that_share() -> None:
    scores, gold = [0.9, 0.8, 0.7, 0.6, 0.5], [True, True, False, True, False]
    fit = cf.threshold_at_recall(scores, gold, 2 / 3)  # two of three positives: 0.9 and 0.8 suffice
    assert 0.7 < fit.threshold <= 0.8 and fit.recall == pytest.approx(2 / 3) and fit.precision == 1.0
    fit = cf.threshold_at_recall(scores, gold, 0.98)  # all three: down to 0.6, one negative on the way
    assert 0.5 < fit.threshold <= 0.6 and fit.precision == pytest.approx(0.75)


def test_story_window_is_the_longest_labelled_span_rounded_up() -> None:
    days = np.array([0.5, 2.1, np.nan, 9.0])
    assert cf.window_days(days, np.array([True, True, True, False])) == 3.0  # undated and different-story spans ignored
    assert cf.window_days(np.array([np.nan]), np.array([True])) == float("inf")


def test_fit_half_is_symmetric_stable_and_about_half() -> None:
    assert cf.fit_half("a", "b") == cf.fit_half("b", "a")
    share = np.mean([cf.fit_half(f"id{i}") for i in range(2000)])
    assert 0.45 < share < 0.55


@pytest.mark.parametrize("dense", [0.3, 0.6, 0.75, 0.95])
@pytest.mark.parametrize("lexical", [0.0, 0.3, 0.8])
@pytest.mark.parametrize("days", [None, 1.0, 5.0])
@pytest.mark.parametrize("cross", [True, False])
@pytest.mark.parametrize("story_weight", [None, 0.0])
@pytest.mark.parametrize("headline", [0.2, 0.85])
def test_decide_is_the_engine_rule(dense: float, lexical: float, days: float | None, cross: bool,
                                   story_weight: float | None, headline: float) -> None:
    knobs = {"copy_dense_threshold": 0.9, "story_threshold": 0.5, "story_dense_threshold": 0.7, "lexical_weight": 0.5,
             "story_window_days": 3.0, "story_threshold_in_window": 0.4, "story_lexical_weight": story_weight,
             "story_title_threshold": 0.8}
    ts = np.array([0.0, np.nan if days is None else days * 86_400])
    col = {"url": np.array([1, 2]), "original": np.array([0, 0]), "title": np.array([3, 4]), "ts": ts,
           "lang": np.array([1, 2 if cross else 1])}
    pair_dense, pair_lexical = np.array([[1.0, dense], [dense, 1.0]]), np.array([[1.0, lexical], [lexical, 1.0]])
    pair_title = np.array([[1.0, headline], [headline, 1.0]])
    copy, story = relations(col, pair_dense, pair_lexical, Ranking(**knobs), pair_title)
    said = cf.decide(dense, lexical, knobs, days_apart=np.nan if days is None else days, cross_language=cross,
                     headline=headline)
    assert (said == cf.COPY) == bool(copy[0, 1]) and (said != cf.DIFFERENT) == bool(story[0, 1])


def test_headline_threshold_is_the_lowest_keeping_every_sets_precision() -> None:
    # set A: base fires on a1 (right); headline scores .9 (right), .8 (right), .7 (wrong), .6 (right)
    # set B: base fires on b1 (right) and b2 (wrong): precision 1/2, the floor B keeps; headlines .85 (right), .75 (wrong)
    scores = [np.nan, .9, .8, .7, .6, np.nan, np.nan, .85, .75]
    base = [True, False, False, False, False, True, True, False, False]
    gold = [True, True, True, False, True, True, False, True, False]
    sets = ["A"] * 5 + ["B"] * 4
    fit = cf.threshold_ored_per_set(scores, base, gold, sets, 0.9)
    # t=.9, .85, .8 keep A at 1.0 and B at >= 1/2 (.85 lifts B to 2/3); t=.75 drops B to 2/4 = 1/2, still its
    # floor; t=.7 drops A to 3/4 < 0.9: stop. The threshold is halfway between .75 and .7
    assert fit.reached and fit.threshold == pytest.approx(0.725)
    assert fit.precision == pytest.approx(5 / 7) and fit.recall == pytest.approx(5 / 6)
    blocked = [False, False, False, False, False, False, False, True, False]  # b's .85 pair lies beyond the window
    assert cf.threshold_ored_per_set(scores, base, gold, sets, 0.9, blocked).threshold == pytest.approx(0.775)
    assert not cf.threshold_ored_per_set([.9, .5], [False, False], [False, True], ["A", "A"], 0.9).reached


def test_story_mrr_ranks_the_whole_set() -> None:
    # b is a's story. Query a: b (0.6) beats c (0.0) -> 1. Query b: c (0.8) beats a (0.6) -> 1/2. Mean 0.75.
    vectors = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    enc = Encoded("t", ["a", "b", "c"], ["en"] * 3, vectors, sparse.csr_matrix((3, 4)),
                  [("a", "b", True), ("a", "c", False)], [])
    grams = (vectors @ vectors.T, np.zeros((3, 3)))
    assert story_mrr(enc, grams, "dense", 0.0, None) == (pytest.approx(0.75), 2)


def test_story_and_related_labels() -> None:
    arts = story_articles()
    clustered = Dataset("s", arts[:3], [], {"a1": "x", "a2": "x", "a3": "y"})
    assert story_labels(clustered, None) == [("a1", "a2", True), ("a1", "a3", False), ("a2", "a3", False)]
    pairs = Dataset("p", arts, [("a1", "a2", 1.0), ("a1", "b1", 0.0), ("b1", "b2", 0.5)])
    assert story_labels(pairs, 0.75) == [("a1", "a2", True), ("a1", "b1", False), ("b1", "b2", False)]
    related = related_labels(pairs)
    positives = {(a, b) for a, b, yes in related if yes}
    assert positives == {("a1", "a2"), ("b1", "b2")}
    assert sum(not yes for *_, yes in related) == 2  # as many random unrelated pairs as related ones


def _write_set(folder: Path, pairs: list[tuple[str, str, float]]) -> None:
    folder.mkdir(parents=True)
    with gzip.open(folder / "articles.jsonl.gz", "wt", encoding="utf-8") as f:
        for a in story_articles():
            f.write(json.dumps(a.model_dump(mode="json") | {"cluster": None}, ensure_ascii=False) + "\n")
    with gzip.open(folder / "pairs.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"a": a, "b": b, "score": s}) + "\n" for a, b, s in pairs)


def test_cli_calibrate_on_a_tiny_labelled_set(tmp_path: Path, tiny_model_path: Path) -> None:
    same = [("a1", "a2", 1.0), ("a1", "a3", 1.0), ("a2", "a4", 1.0), ("b1", "b2", 1.0), ("b1", "b3", 1.0),
            ("c1", "c2", 1.0), ("c2", "c3", 1.0), ("d1", "d2", 1.0), ("d1", "d3", 1.0), ("e1", "e3", 1.0)]
    other = [("a1", "b1", 0.0), ("a2", "c1", 0.0), ("b2", "d1", 0.0), ("c3", "e1", 0.0), ("d2", "e2", 0.0),
             ("a4", "d3", 0.0), ("b4", "c2", 0.0), ("e3", "a3", 0.0)]
    _write_set(tmp_path / "data" / "tgcontest_toloka_pairs", same + other)
    (tmp_path / "data" / "parallel").mkdir()
    rows = [("Lviv opens new tram line", "Львів відкрив нову трамвайну лінію"),
            ("Flood hits Dnipro embankment", "Повінь у Дніпрі: затоплено набережну")]
    with gzip.open(tmp_path / "data" / "parallel" / "train.en-uk.tsv.gz", "wt", encoding="utf-8") as f:
        f.writelines(f"{en}\t{uk}\twmt22-ref\n" for en, uk in rows)
    out = tmp_path / "calibration"
    args = ["calibrate", "--model", str(tiny_model_path), "--data", str(tmp_path / "data"), "--out", str(out)]
    assert main(args) == 0
    written = list(out.glob("*.json"))
    assert len(written) == 1
    result = json.loads(written[0].read_text())  # strict JSON: no NaN
    assert set(CALIBRATED) <= set(result) and result["fitted_on"]
    assert result["sets"]["tgcontest_toloka_pairs"]["story_pairs"] == 18
    assert "sample_articles" in result["sets"]  # the bundled corpus joins by default
    reached = [result[k] for k in ("story_threshold", "story_dense_threshold") if result[k] < cf.NEVER]
    assert result["copy_dense_threshold"] >= max(reached, default=0.0)
    assert set(result["measured_on_heldout"]) >= {"same_story", "related", "copy_on_story_pairs"}
    ranking_from(Settings(), result)  # the engine accepts what calibrate writes
    assert main(["calibrate", "--model", str(tiny_model_path), "--data", str(tmp_path / "nope")]) == 2
