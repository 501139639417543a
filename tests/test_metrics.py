"""Metric functions checked against numbers worked out by hand in comments."""

from __future__ import annotations

import math

import pytest

from recsys.metrics import (
    age_stats,
    average_ranks,
    catalogue_coverage,
    duplicate_rate,
    language_share,
    mean_metrics,
    ndcg_at_k,
    pearson,
    reciprocal_rank,
    recall_at_k,
    spearman,
)
from recsys.story_metrics import (
    collapse_precision,
    decision_precision_recall,
    filler_rate,
    story_ndcg_at_k,
    story_recall_at_k,
    story_reciprocal_rank,
)

RANKED = ["a", "b", "c", "d"]
RELEVANT = {"b", "d"}

# log2(3) = 1.5849625, so 1/log2(3) = 0.6309298; log2(5) = 2.3219281, 1/log2(5) = 0.4306766
INV_LOG2_3 = 0.6309298
INV_LOG2_5 = 0.4306766


# --- recall@k -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (1, 0.0),  # top 1 = [a]: no relevant item -> 0/2
        (2, 0.5),  # top 2 = [a, b]: b found -> 1/2
        (3, 0.5),  # top 3 = [a, b, c]: still only b -> 1/2
        (4, 1.0),  # top 4 holds b and d -> 2/2
        (10, 1.0),  # k beyond the list is fine -> 2/2
    ],
)
def test_recall_at_k(k: int, expected: float) -> None:
    assert recall_at_k(RANKED, RELEVANT, k) == pytest.approx(expected)


def test_recall_counts_a_repeated_relevant_item_once() -> None:
    # top 2 = [b, b]: one distinct relevant item of {b, d} -> 1/2, not 2/2
    assert recall_at_k(["b", "b", "a"], RELEVANT, 2) == pytest.approx(0.5)


def test_recall_rejects_empty_relevant_and_bad_k() -> None:
    with pytest.raises(ValueError):
        recall_at_k(RANKED, set(), 2)
    with pytest.raises(ValueError):
        recall_at_k(RANKED, RELEVANT, 0)


# --- reciprocal rank -------------------------------------------------------------


def test_reciprocal_rank() -> None:
    # first relevant item b sits at rank 2 -> 1/2
    assert reciprocal_rank(RANKED, RELEVANT) == pytest.approx(0.5)
    # first relevant item c sits at rank 3 -> 1/3 = 0.3333
    assert reciprocal_rank(RANKED, {"c", "d"}) == pytest.approx(1 / 3)
    # relevant at rank 1 -> 1.0
    assert reciprocal_rank(RANKED, {"a"}) == pytest.approx(1.0)


def test_reciprocal_rank_zero_when_nothing_relevant_found() -> None:
    assert reciprocal_rank(RANKED, {"z"}) == 0.0
    assert reciprocal_rank([], {"a"}) == 0.0


# --- nDCG -----------------------------------------------------------------------


def test_ndcg_binary() -> None:
    # DCG@4  = 1/log2(2+1) + 1/log2(4+1) = 0.6309298 + 0.4306766 = 1.0616064
    # IDCG@4 = 1/log2(2) + 1/log2(3)     = 1 + 0.6309298         = 1.6309298
    # nDCG@4 = 1.0616064 / 1.6309298 = 0.6509209
    assert ndcg_at_k(RANKED, RELEVANT, 4) == pytest.approx(0.6509209, abs=1e-6)
    assert ndcg_at_k(RANKED, RELEVANT, 4) == pytest.approx(
        (INV_LOG2_3 + INV_LOG2_5) / (1 + INV_LOG2_3), abs=1e-6
    )


def test_ndcg_perfect_and_empty_hit() -> None:
    # [b, d, a, c]: relevant items in the ideal places -> DCG == IDCG -> 1.0
    assert ndcg_at_k(["b", "d", "a", "c"], RELEVANT, 4) == pytest.approx(1.0)
    # top 1 = [a]: DCG@1 = 0 -> 0.0
    assert ndcg_at_k(RANKED, RELEVANT, 1) == 0.0


def test_ndcg_idcg_is_truncated_to_k() -> None:
    # ranked [x, a], relevant {a, b, c}, k = 2
    # DCG@2  = 1/log2(3)           = 0.6309298
    # IDCG@2 = 1 + 1/log2(3) (only 2 of the 3 relevant fit) = 1.6309298
    # nDCG@2 = 0.6309298 / 1.6309298 = 0.3868528
    # (without truncation IDCG would add 1/log2(4) = 0.5 -> 0.3065736)
    assert ndcg_at_k(["x", "a"], {"a", "b", "c"}, 2) == pytest.approx(0.3868528, abs=1e-6)


def test_ndcg_graded() -> None:
    # ranked [a, b, c], gains a=1, b=3, c=2, k = 3
    # DCG  = 1/log2(2) + 3/log2(3) + 2/log2(4) = 1 + 1.8927893 + 1 = 3.8927893
    # ideal order [b, c, a]:
    # IDCG = 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 1.2618595 + 0.5 = 4.7618595
    # nDCG = 3.8927893 / 4.7618595 = 0.8174935
    gains = {"a": 1.0, "b": 3.0, "c": 2.0}
    assert ndcg_at_k(["a", "b", "c"], {"a", "b", "c"}, 3, gains) == pytest.approx(
        0.8174935, abs=1e-6
    )


def test_ndcg_graded_ignores_gains_outside_relevant_and_defaults_to_one() -> None:
    # relevant {a, b}; gains only for b (2.0) and for x (5.0, but x is not relevant)
    # ranked [x, a, b], k = 3: gains per rank 0, 1 (default), 2
    # DCG  = 0 + 1/log2(3) + 2/log2(4) = 0.6309298 + 1.0 = 1.6309298
    # IDCG = 2/log2(2) + 1/log2(3)     = 2 + 0.6309298   = 2.6309298
    # nDCG = 1.6309298 / 2.6309298 = 0.6199062
    gains = {"b": 2.0, "x": 5.0}
    assert ndcg_at_k(["x", "a", "b"], {"a", "b"}, 3, gains) == pytest.approx(0.6199062, abs=1e-6)


def test_ndcg_counts_a_repeated_item_once() -> None:
    # [b, b, a], relevant {b}: DCG = 1 (second b gains nothing), IDCG = 1 -> 1.0
    # (counting b twice would give 1 + 0.6309 = 1.6309, above 1)
    assert ndcg_at_k(["b", "b", "a"], {"b"}, 3) == pytest.approx(1.0)


def test_ndcg_errors() -> None:
    with pytest.raises(ValueError):
        ndcg_at_k(RANKED, set(), 3)
    with pytest.raises(ValueError):
        ndcg_at_k(RANKED, RELEVANT, 0)
    with pytest.raises(ValueError):
        ndcg_at_k(RANKED, {"b"}, 3, {"b": -1.0})
    with pytest.raises(ValueError):
        ndcg_at_k(RANKED, {"b"}, 3, {"b": 0.0})


# --- ranks, Spearman, Pearson ------------------------------------------------------


def test_average_ranks_with_ties() -> None:
    # sorted: 5 (rank 1), 10 (rank 2), 20, 20, 20 (ranks 3, 4, 5 -> mean 4)
    assert list(average_ranks([10, 20, 20, 5, 20])) == [2.0, 4.0, 4.0, 1.0, 4.0]
    # two pairs of ties: 1,1 -> ranks 1,2 -> 1.5; 3,3 -> ranks 3,4 -> 3.5
    assert list(average_ranks([3, 1, 3, 1])) == [3.5, 1.5, 3.5, 1.5]


def test_spearman_with_ties() -> None:
    # x = [1, 2, 2, 3] -> ranks [1, 2.5, 2.5, 4]; y = [1, 3, 2, 4] -> ranks [1, 3, 2, 4]
    # both rank means are 2.5
    # dx = [-1.5, 0, 0, 1.5], dy = [-1.5, 0.5, -0.5, 1.5]
    # sum dx*dy = 2.25 + 0 + 0 + 2.25 = 4.5
    # sum dx^2 = 4.5, sum dy^2 = 2.25 + 0.25 + 0.25 + 2.25 = 5
    # rho = 4.5 / sqrt(4.5 * 5) = 4.5 / sqrt(22.5) = 3 / sqrt(10) = 0.9486833
    # (the no-ties shortcut 1 - 6*sum d^2 / (n(n^2-1)) would give 1 - 3/60 = 0.95)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9486833, abs=1e-6)


def test_spearman_is_rank_based() -> None:
    # y = x^3 is monotone: ranks identical -> rho = 1; reversed -> -1
    x = [1, 2, 3, 4]
    assert spearman(x, [1, 8, 27, 64]) == pytest.approx(1.0)
    assert spearman(x, [64, 27, 8, 1]) == pytest.approx(-1.0)


def test_pearson() -> None:
    # x = [1, 2, 3], y = [2, 4, 7]; means 2 and 13/3
    # dx = [-1, 0, 1], dy = [-7/3, -1/3, 8/3]
    # sum dx*dy = 7/3 + 8/3 = 5; sum dx^2 = 2; sum dy^2 = (49 + 1 + 64)/9 = 114/9
    # r = 5 / sqrt(2 * 114/9) = 5 / sqrt(25.3333) = 5 / 5.0332230 = 0.9933993
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(0.9933993, abs=1e-6)


def test_pearson_differs_from_spearman_on_nonlinear_data() -> None:
    # x = [1, 2, 3, 4], y = [1, 8, 27, 64]; means 2.5 and 25
    # dx = [-1.5, -0.5, 0.5, 1.5], dy = [-24, -17, 2, 39]
    # sum dx*dy = 36 + 8.5 + 1 + 58.5 = 104; sum dx^2 = 5
    # sum dy^2 = 576 + 289 + 4 + 1521 = 2390
    # r = 104 / sqrt(5 * 2390) = 104 / sqrt(11950) = 104 / 109.3160 = 0.9513699
    assert pearson([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(0.9513699, abs=1e-6)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


@pytest.mark.parametrize("corr", [spearman, pearson])
def test_correlation_nan_cases(corr) -> None:
    assert math.isnan(corr([1, 2, 3], [5, 5, 5]))  # constant y
    assert math.isnan(corr([0.1, 0.1, 0.1], [1, 2, 3]))  # constant x (inexact float)
    assert math.isnan(corr([1], [2]))  # one point
    assert math.isnan(corr([], []))  # no points
    assert math.isnan(corr([1, float("nan"), 3], [1, 2, 3]))  # NaN input


@pytest.mark.parametrize("corr", [spearman, pearson])
def test_correlation_length_mismatch(corr) -> None:
    with pytest.raises(ValueError):
        corr([1, 2, 3], [1, 2])


# --- list-level metrics ------------------------------------------------------------


def test_duplicate_rate() -> None:
    # list 1 [a, b, c]: a=s1 (new), b=s1 (repeat), c=s2 (new) -> 1 duplicate
    # list 2 [d, e]:    d=s3 (new), e unlabelled = own story (new) -> 0
    # 1 duplicate / 5 items = 0.2
    story_of = {"a": "s1", "b": "s1", "c": "s2", "d": "s3"}
    assert duplicate_rate([["a", "b", "c"], ["d", "e"]], story_of) == pytest.approx(0.2)


def test_duplicate_rate_is_per_list_and_labels_do_not_collide() -> None:
    # the same story in two different lists is not a duplicate -> 0/2
    assert duplicate_rate([["a"], ["b"]], {"a": "s1", "b": "s1"}) == 0.0
    # unlabelled "a" is its own story, distinct from b's story label "a" -> 0/2
    assert duplicate_rate([["a", "b"]], {"b": "a"}) == 0.0
    # the same unlabelled id twice in a list repeats its own story -> 1/3
    assert duplicate_rate([["x", "y", "x"]], {}) == pytest.approx(1 / 3)


def test_duplicate_rate_empty_is_nan() -> None:
    assert math.isnan(duplicate_rate([], {}))
    assert math.isnan(duplicate_rate([[], []], {}))


def test_language_share() -> None:
    # query 1 (en): a=en (match), b=fr (no)
    # query 2 (de): c=de (match), d=de (match), e unknown (no)
    # 3 matches / 5 items = 0.6
    lang_of = {"a": "en", "b": "fr", "c": "de", "d": "de"}
    lists = [["a", "b"], ["c", "d", "e"]]
    assert language_share(lists, lang_of, ["en", "de"]) == pytest.approx(0.6)


def test_language_share_errors_and_empty() -> None:
    with pytest.raises(ValueError):
        language_share([["a"]], {"a": "en"}, ["en", "de"])
    assert math.isnan(language_share([[]], {}, ["en"]))


def test_age_stats() -> None:
    # NaN dropped -> [1, 2, 3, 4, 10]; median = 3
    # p90 (linear): position 0.9 * (5 - 1) = 3.6 -> 4 + 0.6 * (10 - 4) = 7.6
    stats = age_stats([1.0, 2.0, 3.0, 4.0, float("nan"), 10.0])
    assert stats["median"] == pytest.approx(3.0)
    assert stats["p90"] == pytest.approx(7.6)


def test_age_stats_even_count() -> None:
    # [2, 4, 6, 8]: median = (4 + 6)/2 = 5; p90 position 0.9*3 = 2.7 -> 6 + 0.7*2 = 7.4
    stats = age_stats([8, 2, 6, 4])
    assert stats == {"median": pytest.approx(5.0), "p90": pytest.approx(7.4)}


@pytest.mark.parametrize("ages", [[], [float("nan"), float("nan")]])
def test_age_stats_empty_is_nan(ages) -> None:
    stats = age_stats(ages)
    assert set(stats) == {"median", "p90"}
    assert math.isnan(stats["median"]) and math.isnan(stats["p90"])


def test_catalogue_coverage() -> None:
    # distinct ids {a, b, c} = 3 of a catalogue of 10 -> 0.3
    assert catalogue_coverage([["a", "b"], ["b", "c"], ["a"]], 10) == pytest.approx(0.3)
    assert catalogue_coverage([], 10) == 0.0
    with pytest.raises(ValueError):
        catalogue_coverage([["a"]], 0)


def test_mean_metrics() -> None:
    # recall: (1 + 0) / 2 = 0.5; mrr: (0.5 + 0.25) / 2 = 0.375
    got = mean_metrics([{"recall": 1.0, "mrr": 0.5}, {"recall": 0.0, "mrr": 0.25}])
    assert got == {"recall": pytest.approx(0.5), "mrr": pytest.approx(0.375)}


def test_mean_metrics_empty_and_mismatched_keys() -> None:
    assert mean_metrics([]) == {}
    with pytest.raises(ValueError):
        mean_metrics([{"recall": 1.0}, {"mrr": 0.5}])


# --- story level: found when shown or collapsed into a shown item -----------------

SHOWN = ["a", "b", "c"]
COLLAPSED = {"a": ("x",), "c": ("d", "e")}  # x folded into a (rank 1); d, e into c (rank 3)


def test_story_recall_counts_collapsed_items() -> None:
    # relevant {x, d, z}: x under rank 1 and d under rank 3 are found, z is not -> 2/3
    assert story_recall_at_k(SHOWN, COLLAPSED, {"x", "d", "z"}, 3) == pytest.approx(2 / 3)
    # top 2 only: d sits under rank 3 -> 1/3
    assert story_recall_at_k(SHOWN, COLLAPSED, {"x", "d", "z"}, 2) == pytest.approx(1 / 3)
    # no collapse: the item-level recall (x, d never shown) -> 0
    assert story_recall_at_k(SHOWN, {}, {"x", "d"}, 3) == 0.0
    with pytest.raises(ValueError):
        story_recall_at_k(SHOWN, COLLAPSED, set(), 3)


def test_story_reciprocal_rank() -> None:
    # first rank covering a relevant item: e is under c at rank 3 -> 1/3
    assert story_reciprocal_rank(SHOWN, COLLAPSED, {"e"}) == pytest.approx(1 / 3)
    # x is under a at rank 1 -> 1.0; b itself at rank 2 would be later
    assert story_reciprocal_rank(SHOWN, COLLAPSED, {"x", "b"}) == pytest.approx(1.0)
    assert story_reciprocal_rank(SHOWN, COLLAPSED, {"z"}) == 0.0


def test_story_ndcg() -> None:
    # relevant {b, d}: b gains 1 at rank 2 (1/log2 3 = 0.6309298), d gains 1 at rank 3 (1/log2 4 = 0.5)
    # IDCG (two items at ranks 1, 2) = 1 + 0.6309298 = 1.6309298 -> 1.1309298 / 1.6309298 = 0.6934264
    assert story_ndcg_at_k(SHOWN, COLLAPSED, {"b", "d"}, 3) == pytest.approx(1.1309298 / 1.6309298)
    # without collapse it is the item-level nDCG: only b at rank 2 -> 0.6309298 / 1.6309298 = 0.3868528
    assert story_ndcg_at_k(SHOWN, {}, {"b", "d"}, 3) == pytest.approx(ndcg_at_k(SHOWN, {"b", "d"}, 3))
    assert story_ndcg_at_k(SHOWN, {}, {"b", "d"}, 3) == pytest.approx(0.6309298 / 1.6309298)
    # relevant {a, x}: both under rank 1 -> DCG 2 > IDCG 1.6309298, capped at 1
    assert story_ndcg_at_k(SHOWN, COLLAPSED, {"a", "x"}, 3) == 1.0
    # graded: d gain 0.5 under rank 3 -> 0.5 * 0.5 = 0.25; IDCG = 0.5 -> 0.5
    assert story_ndcg_at_k(SHOWN, COLLAPSED, {"d"}, 3, {"d": 0.5}) == pytest.approx(0.5)


def test_filler_rate_counts_only_known_items() -> None:
    # query 1: a related, b filler, c unknown; query 2: d filler, e unknown -> 2 filler of 3 known
    lists = [["a", "b", "c"], ["d", "e"]]
    labels = [{"a": True, "b": False}, {"d": False}]
    assert filler_rate(lists, labels) == pytest.approx(2 / 3)
    assert math.isnan(filler_rate([["c"]], [{}]))
    with pytest.raises(ValueError):
        filler_rate(lists, labels[:1])


def test_collapse_precision_skips_what_labels_cannot_judge() -> None:
    story = {"a": 1, "x": 1, "c": 2, "d": 3}  # e has no label

    def same(a: str, b: str) -> bool | None:
        return story[a] == story[b] if a in story and b in story else None

    # a<-x right; c<-d wrong; c<-e unknown -> 1 right of 2 judged
    assert collapse_precision([COLLAPSED], same) == pytest.approx(0.5)
    assert math.isnan(collapse_precision([{"c": ("e",)}], same))
    assert math.isnan(collapse_precision([], same))


def test_decision_precision_recall() -> None:
    # said yes to 1, 2, 3; gold yes for 1, 2, 4 -> precision 2/3, recall 2/3
    assert decision_precision_recall([1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx((2 / 3, 2 / 3))
    # never said yes: precision undefined; recall 0
    p, r = decision_precision_recall([0, 0], [1, 0])
    assert math.isnan(p) and r == 0.0
    with pytest.raises(ValueError):
        decision_precision_recall([1], [1, 0])
    # weights: the one negative said yes to stands for 3 -> precision 2 / (2 + 3) = 0.4; recall 2/3 unchanged
    assert decision_precision_recall([1, 1, 1, 0], [1, 1, 0, 1], [1, 1, 3, 1]) == pytest.approx((0.4, 2 / 3))
