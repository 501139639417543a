"""Scoring primitives of the ranking stage: pure functions on arrays of cosines and times.

`blend` puts dense and lexical cosines on one absolute scale (what thresholds are fitted on);
`fuse` is the relevance part of the ranking key, by the configured fusion method; `recency` is
the closeness-in-time bonus added to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from recsys.recommend import Ranking

DAY = 86_400.0
RRF_K = 60.0


def blend(dense: np.ndarray | float, lexical: np.ndarray | float, weight: float) -> np.ndarray | float:
    """The absolute fused score: dense cosine plus a weighted lexical cosine, back on the cosine scale."""
    return (dense + weight * lexical) / (1.0 + weight)


def _minmax(x: np.ndarray) -> np.ndarray:
    low = x.min() if len(x) else 0.0
    span = float(x.max() - low) if len(x) else 0.0
    return (x - low) / span if span > 0 else np.zeros_like(x)


def _ranks(x: np.ndarray) -> np.ndarray:
    out = np.empty(len(x))
    out[np.argsort(-x, kind="stable")] = np.arange(1, len(x) + 1)
    return out


def fuse(dense: np.ndarray, lexical: np.ndarray, knobs: Ranking) -> np.ndarray:
    """The relevance part of the ranking key, by the configured fusion method."""
    w = knobs.lexical_weight
    if knobs.fusion == "dense" or w == 0:
        return dense.astype(np.float64)
    if knobs.fusion == "weighted":  # per-list normalisation, then a weighted sum
        return (_minmax(dense) + w * _minmax(lexical)) / (1.0 + w)
    if knobs.fusion == "rrf":
        return 1.0 / (RRF_K + _ranks(dense)) + w / (RRF_K + _ranks(lexical))
    return np.asarray(blend(dense, lexical, w), dtype=np.float64)


def recency(ts: np.ndarray, anchor_ts: float, knobs: Ranking) -> np.ndarray:
    """Bonus halving every half-life of distance from the article's own time; undated items get
    the bonus of one half-life away (neither favoured nor pushed down)."""
    days = np.abs(ts - anchor_ts) / DAY
    days = np.where(np.isnan(days), knobs.recency_half_life_days, days)
    return knobs.recency_weight * 0.5 ** (days / knobs.recency_half_life_days)
