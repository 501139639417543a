"""Story-level labels for `recsys evaluate`: is an item the query's story, labelled related, or filler;
was a collapse right; and how the engine's same-story decision does against labelled pairs.

What the labels allow: a set with clusters labels every clustered pair (same cluster or not); a
set of pairs labels only its pairs (score at or above the story threshold: one story) and, by
transitivity, pairs within one connected group of same-story pairs. Anything else is unknown
and is left out of the story-level precision figures.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Mapping, Sequence

from recsys import story_metrics
from recsys.article import Article, fold
from recsys.calibration_data import STORY_SETS, story_labels
from recsys.calibration_fit import DIFFERENT, decide
from recsys.datasets import Dataset, stories

log = logging.getLogger(__name__)

SAMPLE_SET = "sample_articles"
MAX_NEGATIVES = 3000
Judge = Callable[[str, str], "bool | None"]


def story_judge(ds: Dataset, story_threshold: float) -> Judge:
    """same_story(a, b): True / False where the labels tell, None where they do not."""
    if ds.clusters:
        return lambda a, b: (ds.clusters[a] == ds.clusters[b]) if a in ds.clusters and b in ds.clusters else None
    labelled = {frozenset((a, b)): s >= story_threshold for a, b, s in ds.pairs if a != b}
    group = stories(ds, story_threshold)  # connected groups of same-story pairs

    def judge(a: str, b: str) -> bool | None:
        verdict = labelled.get(frozenset((a, b)))
        if verdict is None and a in group and group.get(a) == group.get(b):
            return True
        return verdict

    return judge


def filler_labels(query: str, shown: Sequence[str], relevant: Mapping[str, float], judge: Judge) -> dict[str, bool]:
    """The shown items whose relation to the query is known: True = same story or labelled related,
    False = filler (another cluster, or a labelled pair scored below the related threshold)."""
    out: dict[str, bool] = {}
    for item in shown:
        verdict = judge(query, item)
        if item in relevant or verdict:
            out[item] = True
        elif verdict is False:
            out[item] = False
    return out


def story_row(shown: Sequence[str], collapsed: Mapping[str, Sequence[str]], relevant: Mapping[str, float],
              k: int) -> dict[str, float]:
    """Story-level accuracy of one answer: relevant items count when shown or collapsed into a shown item."""
    return {f"story_recall@{k}": story_metrics.story_recall_at_k(shown, collapsed, relevant, k),
            "story_mrr": story_metrics.story_reciprocal_rank(shown, collapsed, relevant),
            f"story_ndcg@{k}": story_metrics.story_ndcg_at_k(shown, collapsed, relevant, k, relevant)}


def fill_share(reasons: Sequence[Sequence[str] | None]) -> float | None:
    """Share of shown items the system itself marked "fill"; None when it gives no reasons."""
    given = [r for r in reasons if r is not None]
    if not given:
        return None
    total = sum(len(r) for r in given)
    return sum(x == "fill" for r in given for x in r) / total if total else float("nan")


def same_identity(a: Article, b: Article) -> bool:
    """One text by identity: a shared url/original_url, or the same non-empty normalised headline."""
    if ({a.url, a.original_url} - {None}) & ({b.url, b.original_url} - {None}):
        return True
    return bool(fold(a.title)) and fold(a.title) == fold(b.title)


def decision_quality(ds: Dataset, engine, story_threshold: float, seed: int = 0) -> dict | None:  # noqa: ANN001
    """Precision and recall of the engine's same-story decision (COPY or SAME_STORY) on labelled pairs:
    tgcontest, SemEval (score >= 0.75) and the sample corpus clusters; None for other sets. At most
    MAX_NEGATIVES different-story pairs are judged, each standing for its share of all of them."""
    if ds.name not in STORY_SETS and ds.name != SAMPLE_SET:
        return None
    labels = story_labels(ds, STORY_SETS.get(ds.name, story_threshold))
    positives, negatives = [p for p in labels if p[2]], [p for p in labels if not p[2]]
    judged = random.Random(seed).sample(negatives, min(len(negatives), MAX_NEGATIVES))
    by_id = {a.id: a for a in ds.articles}
    knobs = dataclasses.asdict(engine.knobs)
    said = []
    for a, b, _ in positives + judged:
        dense, lexical, headline = engine.pair_features(a, b)
        ta, tb = by_id[a].published_ts, by_id[b].published_ts
        days = abs(ta - tb) / 86_400 if ta is not None and tb is not None else float("nan")
        cross = by_id[a].lang != by_id[b].lang
        said.append(decide(dense, lexical, knobs, same_identity(by_id[a], by_id[b]), days, cross, headline) != DIFFERENT)
    weights = [1.0] * len(positives) + [len(negatives) / max(len(judged), 1)] * len(judged)
    gold = [True] * len(positives) + [False] * len(judged)
    precision, recall = story_metrics.decision_precision_recall(said, gold, weights)
    log.info("%s: same-story decision P=%.3f R=%.3f over %d pairs", ds.name, precision, recall, len(said))
    return {"precision": precision, "recall": recall, "pairs": len(labels), "positives": len(positives),
            "judged": len(said)}
