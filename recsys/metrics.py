"""Pure metric functions for offline evaluation of related-article lists.

Everything here takes plain Python sequences and returns plain floats or
dicts; there is no I/O. Ranks are 1-based throughout.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np

NAN = float("nan")


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def _check_relevant(relevant: Collection[str]) -> None:
    if len(relevant) == 0:
        raise ValueError("relevant is empty; the metric is undefined")


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the relevant items that appear in the top k of ``ranked``.

    A relevant item repeated in the top k is counted once.
    Raises ValueError when ``relevant`` is empty or ``k`` < 1.
    """
    _check_k(k)
    _check_relevant(relevant)
    wanted = set(relevant)
    found = wanted.intersection(ranked[:k])
    return len(found) / len(wanted)


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str]) -> float:
    """1 / rank of the first relevant item in ``ranked``; 0.0 if none is found."""
    wanted = set(relevant)
    for rank, item in enumerate(ranked, start=1):
        if item in wanted:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(
    ranked: Sequence[str],
    relevant: Collection[str],
    k: int,
    gains: Mapping[str, float] | None = None,
) -> float:
    """Normalised DCG of the top k, with discount log2(rank + 1).

    Gain is 1 for each relevant item by default. With ``gains``, a relevant
    item's gain is ``gains[item]`` (1.0 when missing); items outside
    ``relevant`` always gain 0. A repeated item gains only on its first
    appearance. IDCG sorts the gains of all relevant items in descending order
    and keeps the top k. Raises ValueError when ``relevant`` is empty, k < 1,
    a gain is negative, or every relevant gain is 0.
    """
    grade, idcg = _grades(relevant, k, gains)
    dcg = 0.0
    seen: set[str] = set()
    for rank, item in enumerate(ranked[:k], start=1):
        if item in grade and item not in seen:
            dcg += grade[item] / math.log2(rank + 1)
        seen.add(item)
    return dcg / idcg


def _grades(relevant: Collection[str], k: int, gains: Mapping[str, float] | None) -> tuple[dict[str, float], float]:
    """Gain of each relevant item and the ideal DCG of the top k (the checks of ``ndcg_at_k``)."""
    _check_k(k)
    _check_relevant(relevant)
    grade = {item: 1.0 if gains is None else float(gains.get(item, 1.0)) for item in set(relevant)}
    if any(g < 0 for g in grade.values()):
        raise ValueError("gains must be non-negative")
    idcg = sum(g / math.log2(r + 1) for r, g in enumerate(sorted(grade.values(), reverse=True)[:k], start=1))
    if idcg == 0.0:
        raise ValueError("every relevant item has gain 0; nDCG is undefined")
    return grade, idcg


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the mean of their ranks."""
    arr = np.asarray(values, dtype=float)
    order = np.argsort(arr, kind="stable")
    ranks = np.empty(len(arr), dtype=float)
    sorted_vals = arr[order]
    start = 0
    while start < len(arr):
        end = start
        while end + 1 < len(arr) and sorted_vals[end + 1] == sorted_vals[start]:
            end += 1
        # positions start..end (0-based) hold ranks start+1..end+1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def _paired(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    if len(x) != len(y):
        raise ValueError(f"length mismatch: {len(x)} vs {len(y)}")
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of ``x`` and ``y``.

    NaN when there are fewer than 2 points, a side is constant, or an input
    is NaN. Raises ValueError on a length mismatch.
    """
    a, b = _paired(x, y)
    if len(a) < 2 or np.isnan(a).any() or np.isnan(b).any():
        return NAN
    if a.max() == a.min() or b.max() == b.min():
        return NAN
    da, db = a - a.mean(), b - b.mean()
    r = float(np.dot(da, db) / math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db))))
    return max(-1.0, min(1.0, r))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman correlation: Pearson on average ranks (ties share their mean rank).

    NaN when there are fewer than 2 points, a side is constant, or an input
    is NaN. Raises ValueError on a length mismatch.
    """
    a, b = _paired(x, y)
    if len(a) < 2 or np.isnan(a).any() or np.isnan(b).any():
        return NAN
    return pearson(average_ranks(a), average_ranks(b))


def duplicate_rate(lists: Sequence[Sequence[str]], story_of: Mapping[str, str]) -> float:
    """Share of all returned items whose story already appeared higher in the same list.

    An item with no entry in ``story_of`` is its own story (never equal to a
    labelled story). NaN when the lists hold no items at all.
    """
    total = dupes = 0
    for answer in lists:
        shown: set[tuple[str, str]] = set()
        for item in answer:
            key = ("story", story_of[item]) if item in story_of else ("item", item)
            total += 1
            if key in shown:
                dupes += 1
            shown.add(key)
    return dupes / total if total else NAN


def language_share(
    lists: Sequence[Sequence[str]],
    lang_of: Mapping[str, str],
    query_langs: Sequence[str],
) -> float:
    """Share of all returned items whose language equals their query's language.

    ``query_langs[i]`` is the language of the query behind ``lists[i]``. Items
    with no known language count as not matching. NaN when there are no items.
    Raises ValueError when the two sequences differ in length.
    """
    if len(lists) != len(query_langs):
        raise ValueError(f"length mismatch: {len(lists)} lists vs {len(query_langs)} languages")
    total = same = 0
    for answer, qlang in zip(lists, query_langs):
        for item in answer:
            total += 1
            if lang_of.get(item) == qlang:
                same += 1
    return same / total if total else NAN


def age_stats(ages_days: Sequence[float]) -> dict[str, float]:
    """Median and 90th percentile (linear interpolation) of ages, ignoring NaN.

    Both are NaN when no non-NaN age remains.
    """
    arr = np.asarray(ages_days, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return {"median": NAN, "p90": NAN}
    return {
        "median": float(np.median(arr)),
        "p90": float(np.percentile(arr, 90, method="linear")),
    }


def catalogue_coverage(lists: Sequence[Sequence[str]], catalogue_size: int) -> float:
    """Distinct recommended ids divided by the catalogue size.

    Raises ValueError when ``catalogue_size`` < 1.
    """
    if catalogue_size < 1:
        raise ValueError(f"catalogue_size must be at least 1, got {catalogue_size}")
    distinct = {item for answer in lists for item in answer}
    return len(distinct) / catalogue_size


def mean_metrics(per_query: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over queries; {} for no queries.

    Every query must report the same keys (ValueError otherwise), so each mean
    has the same denominator. A NaN value makes that metric's mean NaN.
    """
    if not per_query:
        return {}
    keys = set(per_query[0])
    for i, row in enumerate(per_query):
        if set(row) != keys:
            raise ValueError(f"query {i} has keys {sorted(row)}, expected {sorted(keys)}")
    return {key: float(np.mean([row[key] for row in per_query])) for key in per_query[0]}
