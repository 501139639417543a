"""Story-level metrics: an item collapsed into a shown item of its story counts as found; and the
metrics of the same-story decision itself (what collapses). Pure functions, no I/O, 1-based ranks."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence

from recsys.metrics import NAN, _check_k, _check_relevant, _grades


# -- story level: a relevant item counts as found when shown or collapsed into a shown item ----------

def _covered(shown: Sequence[str], collapsed: Mapping[str, Sequence[str]], k: int | None) -> list[list[str]]:
    """Per shown position (top k; None: all): the shown id, then the ids collapsed into it."""
    top = shown if k is None else shown[:k]
    return [[item, *collapsed.get(item, ())] for item in top]


def story_recall_at_k(shown: Sequence[str], collapsed: Mapping[str, Sequence[str]], relevant: Collection[str],
                      k: int) -> float:
    """Share of the relevant items shown in the top k or collapsed into one of the top k.

    Raises ValueError when ``relevant`` is empty or ``k`` < 1."""
    _check_k(k)
    _check_relevant(relevant)
    wanted = set(relevant)
    found = wanted.intersection(x for group in _covered(shown, collapsed, k) for x in group)
    return len(found) / len(wanted)


def story_reciprocal_rank(shown: Sequence[str], collapsed: Mapping[str, Sequence[str]],
                          relevant: Collection[str]) -> float:
    """1 / rank of the first shown item that is relevant or has a relevant item collapsed into it; 0.0 if none."""
    wanted = set(relevant)
    for rank, group in enumerate(_covered(shown, collapsed, None), start=1):
        if wanted.intersection(group):
            return 1.0 / rank
    return 0.0


def story_ndcg_at_k(shown: Sequence[str], collapsed: Mapping[str, Sequence[str]], relevant: Collection[str],
                    k: int, gains: Mapping[str, float] | None = None) -> float:
    """nDCG@k where a relevant item gains at the rank of the shown item that covers it (itself, or the
    one it was collapsed into); each relevant item gains once. IDCG is the item-level ideal (one
    relevant item per rank), so without collapse this equals ``ndcg_at_k``; one rank covering several
    relevant items can exceed that ideal, and the result is capped at 1. Same errors as ``ndcg_at_k``.
    """
    grade, idcg = _grades(relevant, k, gains)
    dcg, seen = 0.0, set()
    for rank, group in enumerate(_covered(shown, collapsed, k), start=1):
        fresh = [x for x in dict.fromkeys(group) if x in grade and x not in seen]
        dcg += sum(grade[x] for x in fresh) / math.log2(rank + 1)
        seen.update(group)
    return min(1.0, dcg / idcg)


def filler_rate(lists: Sequence[Sequence[str]], labels: Sequence[Mapping[str, bool]]) -> float:
    """Share of shown items known to be filler: neither the query's story nor labelled related to it.

    ``labels[i]`` maps an item to True (same story or labelled related to query i) or False (known
    to be neither); items it lacks are unknown and left out of numerator and denominator. NaN when
    no shown item is known. Raises ValueError when the two sequences differ in length."""
    if len(lists) != len(labels):
        raise ValueError(f"length mismatch: {len(lists)} lists vs {len(labels)} label maps")
    known = filler = 0
    for answer, label in zip(lists, labels):
        for item in answer:
            if item in label:
                known += 1
                filler += not label[item]
    return filler / known if known else NAN


def collapse_precision(collapsed: Sequence[Mapping[str, Sequence[str]]],
                       same_story: Callable[[str, str], bool | None]) -> float:
    """Share of collapsed items that tell the same story as the shown item they were collapsed into.

    ``same_story(shown, other)`` is True, False, or None when the labels cannot tell; None pairs are
    left out. NaN when no collapsed pair can be judged."""
    judged = right = 0
    for answer in collapsed:
        for shown, others in answer.items():
            for other in others:
                verdict = same_story(shown, other)
                if verdict is not None:
                    judged += 1
                    right += bool(verdict)
    return right / judged if judged else NAN


def decision_precision_recall(predicted: Sequence[bool], gold: Sequence[bool],
                              weights: Sequence[float] | None = None) -> tuple[float, float]:
    """(precision, recall) of yes/no decisions against gold labels; NaN where undefined (no yes said, no
    yes in gold). ``weights``: each decision counts that many times (a subsample standing for more).
    Raises ValueError on a length mismatch."""
    w = [1.0] * len(gold) if weights is None else list(weights)
    if not len(predicted) == len(gold) == len(w):
        raise ValueError(f"length mismatch: {len(predicted)} vs {len(gold)} vs {len(w)}")
    tp = sum(x for p, g, x in zip(predicted, gold, w) if p and g)
    said = sum(x for p, x in zip(predicted, w) if p)
    wanted = sum(x for g, x in zip(gold, w) if g)
    return (tp / said if said else NAN, tp / wanted if wanted else NAN)
