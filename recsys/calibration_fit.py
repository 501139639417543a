"""Pure threshold fitting for `recsys calibrate`, and the story rule on two scores.

Everything here takes plain arrays of scores and labels; no model, no I/O. A decision fires
when its score is at or above the threshold; NEVER (2.0, above any cosine) turns one off.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.scores import blend

NEVER = 2.0  # the engine's "off": no cosine reaches it
DIFFERENT, SAME_STORY, COPY = 0, 1, 2


@dataclass(frozen=True)
class Fit:
    """One fitted threshold and how its decision did on the data it was fitted on."""

    threshold: float
    precision: float
    recall: float
    reached: bool = True  # False: no threshold met the precision target; `threshold` is NEVER


def fit_half(*ids: str) -> bool:
    """Whether labels keyed by `ids` are in the half that thresholds are fitted on (the rest measures them).

    Deterministic and order-free: (a, b) and (b, a) land in the same half."""
    key = "|".join(sorted(ids)).encode("utf-8")
    return hashlib.blake2b(key, digest_size=8).digest()[0] % 2 == 0


def precision_recall(predicted: Sequence[bool], gold: Sequence[bool]) -> tuple[float, float]:
    """Precision and recall of boolean predictions; NaN where the denominator is 0."""
    p, g = np.asarray(predicted, bool), np.asarray(gold, bool)
    tp = int(np.sum(p & g))
    fired, positives = int(p.sum()), int(g.sum())
    return (tp / fired if fired else math.nan, tp / positives if positives else math.nan)


def _sweep(scores: np.ndarray, gold: np.ndarray, forced: np.ndarray) -> tuple[np.ndarray, ...]:
    """Candidate thresholds (distinct scores, descending), the next lower score, cumulative tp and fp."""
    tp0, fp0 = int(np.sum(gold & forced)), int(np.sum(~gold & forced))
    s, g = scores[~forced], gold[~forced]
    order = np.argsort(-s, kind="stable")
    s, g = s[order], g[order]
    tp, fp = tp0 + np.cumsum(g), fp0 + np.cumsum(~g)
    last = np.r_[s[1:] != s[:-1], True] if len(s) else np.zeros(0, bool)  # end of each run of ties
    below = np.r_[s[1:], -np.inf]
    return s[last], below[last], tp[last], fp[last]


def _between(score: float, below: float) -> float:
    """Halfway between the lowest accepted score and the next lower one: generalises both ways."""
    return float(score if not np.isfinite(below) else (score + below) / 2)


def threshold_at_precision(scores: Sequence[float], gold: Sequence[bool], min_precision: float,
                           forced: Sequence[bool] | None = None) -> Fit:
    """The threshold with the most recall whose decision keeps precision >= `min_precision`.

    `forced` marks items that the decision accepts anyway (another rule ORed with this one).
    Out of reach: threshold NEVER, with the precision and recall of the forced items alone.
    """
    s, g = np.asarray(scores, float), np.asarray(gold, bool)
    f = np.zeros(len(s), bool) if forced is None else np.asarray(forced, bool)
    cand, below, tp, fp = _sweep(s, g, f)
    ok = np.flatnonzero(tp / np.maximum(tp + fp, 1) >= min_precision)
    if len(ok) == 0 or not g.any():
        return Fit(NEVER, *precision_recall(f, g), reached=False)
    i = ok[-1]  # the lowest admissible threshold: recall only grows as the threshold falls
    return Fit(_between(cand[i], below[i]), tp[i] / (tp[i] + fp[i]), tp[i] / g.sum())


def fit_story_rule(dense: Sequence[float], mixed: Sequence[float], gold: Sequence[bool], cross: Sequence[bool],
                   min_precision: float) -> tuple[Fit, Fit]:
    """Thresholds of `dense >= d or mixed >= m` with the most recall at precision >= `min_precision`.

    `d` alone must keep that precision on the cross-language pairs (`cross`, where lexical
    overlap is ~0 and only the dense rule fires) and on all pairs; the ORed rule must keep it on
    all pairs. Returns (the dense fit, measured on cross-language pairs; the whole rule's fit)."""
    d, m = np.asarray(dense, float), np.asarray(mixed, float)
    g, c = np.asarray(gold, bool), np.asarray(cross, bool)
    best: tuple[Fit, Fit] | None = None
    for t in [NEVER, *sorted(set(d[c & g].tolist()), reverse=True)]:
        forced = d >= t if t != NEVER else np.zeros(len(d), bool)
        on_cross = precision_recall(forced[c], g[c])
        if t != NEVER and not (on_cross[0] >= min_precision and precision_recall(forced, g)[0] >= min_precision):
            continue  # the dense rule alone already calls too many different stories one
        whole = threshold_at_precision(m, g, min_precision, forced=forced)
        if best is None or whole.recall > best[1].recall:
            best = (Fit(t, *on_cross, reached=t != NEVER), whole)
    assert best is not None  # NEVER is always a candidate
    return best


def threshold_ored_per_set(scores: Sequence[float], base: Sequence[bool], gold: Sequence[bool],
                           sets: Sequence[str], min_precision: float, blocked: Sequence[bool] | None = None) -> Fit:
    """The lowest threshold of a rule `score >= t` ORed with an existing decision `base` such that, at it
    and at every higher one, no set loses precision: each set keeps `min_precision`, or where `base`
    alone is below that on the set, keeps at least `base`'s precision there.

    Judged per set, not pooled: a set where the rule is far more precise must not pay for one where it
    is not. `blocked` pairs never fire by the rule (beyond the story window). NaN scores never fire.
    Returns NEVER (reached=False) when even the highest candidate fails; precision and recall are
    those of the whole ORed rule on all sets."""
    s, b, g = np.asarray(scores, float), np.asarray(base, bool), np.asarray(gold, bool)
    names = np.asarray(sets, dtype=object)
    able = ~b & ~np.isnan(s)
    if blocked is not None:
        able &= ~np.asarray(blocked, bool)
    floors = {}
    for name in set(names.tolist()):
        mine = names == name
        p, _ = precision_recall(b[mine], g[mine])
        floors[name] = min_precision if math.isnan(p) else min(min_precision, p)
    cand = np.unique(s[able])[::-1]
    best: Fit = Fit(NEVER, *precision_recall(b, g), reached=False)
    for i, t in enumerate(cand):
        said = b | (able & (s >= t))
        if any(precision_recall(said[names == n], g[names == n])[0] < floors[n] - 1e-12 for n in floors):
            break
        below = cand[i + 1] if i + 1 < len(cand) else -np.inf
        best = Fit(_between(t, below), *precision_recall(said, g))
    return best


def threshold_best_f1(scores: Sequence[float], gold: Sequence[bool]) -> Fit:
    """The threshold that maximises F1 of `score >= threshold` against `gold`."""
    s, g = np.asarray(scores, float), np.asarray(gold, bool)
    cand, below, tp, fp = _sweep(s, g, np.zeros(len(s), bool))
    if len(cand) == 0 or not g.any():
        return Fit(NEVER, math.nan, math.nan, reached=False)
    i = int(np.argmax(2 * tp / (tp + fp + g.sum())))
    return Fit(_between(cand[i], below[i]), tp[i] / (tp[i] + fp[i]), tp[i] / g.sum())


def threshold_at_recall(scores: Sequence[float], gold: Sequence[bool], min_recall: float) -> Fit:
    """The highest threshold whose `score >= threshold` still finds `min_recall` of the positives."""
    s, g = np.asarray(scores, float), np.asarray(gold, bool)
    cand, below, tp, fp = _sweep(s, g, np.zeros(len(s), bool))
    if len(cand) == 0 or not g.any():
        return Fit(NEVER, math.nan, math.nan, reached=False)
    i = int(np.argmax(tp / g.sum() >= min_recall - 1e-12))  # the sweep lowers the threshold step by step
    return Fit(_between(cand[i], below[i]), tp[i] / (tp[i] + fp[i]), tp[i] / g.sum())


def low_percentile(scores: Sequence[float], percent: float) -> float:
    """The `percent`-th percentile (linear interpolation); NaN for no scores."""
    arr = np.asarray(scores, float)
    return float(np.percentile(arr, percent)) if arr.size else math.nan


def decide(dense: float, lexical: float, knobs: dict, same_identity: bool = False,
           days_apart: float = math.nan, cross_language: bool = True, headline: float = math.nan) -> int:
    """COPY, SAME_STORY or DIFFERENT from two items' scores: the story rule of story_rule.relations.

    `same_identity`: they share a url/original_url or a normalised headline; `days_apart`: their
    distance in time (NaN when either is undated); `cross_language`: they are in two languages (only
    then, and never beyond the story window, do near-identical vectors mean one text); `headline`:
    the cosine of their headlines' vectors (NaN: unknown, the headline rule does not fire)."""
    apart = days_apart > float(knobs.get("story_window_days", math.inf))
    translated = cross_language and not apart and dense >= knobs["copy_dense_threshold"]
    if same_identity or translated:
        return COPY
    if apart:
        return DIFFERENT
    threshold = knobs["story_threshold"]
    if not math.isnan(days_apart) and knobs.get("story_threshold_in_window") is not None:
        threshold = knobs["story_threshold_in_window"]
    weight = knobs.get("story_lexical_weight")
    weight = knobs["lexical_weight"] if weight is None else weight
    if blend(dense, lexical, weight) >= threshold or dense >= knobs["story_dense_threshold"]:
        return SAME_STORY
    if headline >= float(knobs.get("story_title_threshold", NEVER)):
        return SAME_STORY
    return DIFFERENT


def window_days(days_apart: np.ndarray, gold: np.ndarray) -> float:
    """The story window: the longest span between two items of one story in dated labelled pairs,
    rounded up to whole days (inf when no labelled pair is dated)."""
    spans = days_apart[gold & ~np.isnan(days_apart)]
    return float(math.ceil(spans.max())) if len(spans) else math.inf


def first_hit_rr(scores: Sequence[float], relevant: Sequence[bool]) -> float:
    """1 / rank of the first relevant candidate when sorted by score (ties: lower index first); 0 if none."""
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    hits = np.flatnonzero(np.asarray(relevant, bool)[order])
    return 1.0 / (hits[0] + 1) if len(hits) else 0.0
