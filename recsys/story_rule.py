"""The story rule: which candidates are one text told twice (copy) and which tell one story.

Pure functions on catalog columns and pair-similarity matrices; the same rule runs per request
(recommend.collapse), at build time (neighbours) and, on two scores, in calibration_fit.decide.
The evidence: shared urls or headlines, near-identical vectors across languages (a translation),
the pair score of the two texts, and the cosine of their headlines alone (two outlets' headlines
of one event agree more closely than their leads, which each outlet writes its own way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from recsys.scores import DAY, blend

if TYPE_CHECKING:
    from recsys.recommend import Ranking

LexicalAt = Callable[[np.ndarray], np.ndarray]  # mask of pairs -> lexical similarities there (0 elsewhere)
STORY_COLUMNS = ("url", "original", "title", "ts", "lang")  # what `relations` reads


def story_weight(knobs: Ranking) -> float:
    """The lexical weight of the pair score that decides "one story"."""
    return knobs.lexical_weight if knobs.story_lexical_weight is None else knobs.story_lexical_weight


def _shared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a[..., :, None] == b[..., None, :]) & (a[..., :, None] != 0)


def relations(col: dict[str, np.ndarray], pair_dense: np.ndarray, pair_lexical: np.ndarray | LexicalAt,
              knobs: Ranking, pair_title: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(copy, story) boolean matrices over some candidates: one text told twice, and one story.

    `pair_lexical` is the lexical similarity matrix, or a function giving it where a mask says:
    only pairs whose dense score alone cannot settle the story decision ask for it. `pair_title`:
    the headline vectors' cosines (an empty headline has a zero vector, so it never fires). Columns
    may be stacked (B, n) with (B, n, n) pair matrices: B lists of candidates are judged at once."""
    url, original = col["url"], col["original"]
    links = _shared(url, original) | _shared(original, original) | _shared(url, url)
    days = np.abs(col["ts"][..., :, None] - col["ts"][..., None, :]) / DAY  # NaN when either is undated
    apart, dated = days > knobs.story_window_days, ~np.isnan(days)
    # near-identical vectors mean one text only across languages (a translation, never published further
    # apart than one story); within one language two outlets' takes on one event score as high: the story
    # rule judges those
    translated = (pair_dense >= knobs.copy_dense_threshold) & (col["lang"][..., :, None] != col["lang"][..., None, :])
    translated &= ~apart
    copy = links | np.swapaxes(links, -1, -2) | _shared(col["title"], col["title"]) | translated
    in_window = knobs.story_threshold if knobs.story_threshold_in_window is None else knobs.story_threshold_in_window
    threshold = np.where(dated, in_window, knobs.story_threshold)
    w = story_weight(knobs)
    if w == 0:
        close = pair_dense >= threshold
    else:  # lexical cosines lie in [0, 1]: outside this band of dense scores the pair score is decided
        sure = pair_dense >= threshold * (1.0 + w) + 1e-9
        undecided = ~sure & (pair_dense >= threshold * (1.0 + w) - w - 1e-9) & ~copy & ~apart
        close = sure
        if undecided.any():
            lexical = pair_lexical(undecided) if callable(pair_lexical) else pair_lexical
            close = close | (undecided & (blend(pair_dense, lexical, w) >= threshold))
    close = close | (pair_dense >= knobs.story_dense_threshold)
    if pair_title is not None:
        close = close | (pair_title >= knobs.story_title_threshold)
    return copy, copy | (close & ~apart)
