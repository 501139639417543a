"""Labelled pairs for `recsys calibrate`: which pairs are one story, which are related, and their scores.

Same story: tgcontest pairs scored 1 (OK), SemEval-2022 pairs with overall score 1-1.75 (score
>= 0.75), same-cluster pairs of the sample corpus; every other labelled pair of those sets, and
every different-cluster pair of the sample corpus, is a negative.
Related: pairs scored >= 0.5 in the pair sets and same-cluster pairs (at most MAX_RELATED per
set); unrelated: as many random pairs of the same set (not labelled, not one cluster) plus pairs
labelled 0 where 0 means "unrelated" (SemEval overall 4, STS-B 0). tgcontest BAD and ParaPhraser
0 pairs are near misses on one topic, so they are left out of the related decision.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from recsys import lexical
from recsys.calibration_fit import fit_half
from recsys.datasets import Dataset, load_dataset
from recsys.embed import encode_headlines

log = logging.getLogger(__name__)

STORY_SETS = {"tgcontest_toloka_pairs": 1.0, "semeval2022_task8_subset": 0.75}  # min score of "same story"
RELATED_SETS = ("tgcontest_toloka_pairs", "semeval2022_task8_subset", "paraphraser_ru", "stsb_multi_mt")
ZERO_IS_UNRELATED = ("semeval2022_task8_subset", "stsb_multi_mt")
STSB_SOURCES = ("headlines",)  # the news part of STS-B
RELATED_MIN = 0.5
MAX_RELATED = 1500

Labels = list[tuple[str, str, bool]]


@dataclass
class Encoded:
    """One labelled set, embedded: dense unit vectors, lexical TF-IDF rows and headline vectors per article."""

    name: str
    ids: list[str]
    langs: list[str]
    vectors: np.ndarray
    lexical: sparse.csr_matrix
    story: Labels
    related: Labels
    ts: np.ndarray | None = None  # publication time per article (NaN when undated)
    headlines: np.ndarray | None = None  # unit vectors of the headlines alone (None: not embedded)

    def days_apart(self, pairs: Sequence[tuple[str, str, bool]]) -> np.ndarray:
        """Days between the two articles of each pair (NaN where either is undated)."""
        if self.ts is None:
            return np.full(len(pairs), np.nan)
        pos = {ident: i for i, ident in enumerate(self.ids)}
        return np.array([abs(self.ts[pos[a]] - self.ts[pos[b]]) / 86_400 for a, b, _ in pairs], dtype=float)

    def features(self, pairs: Sequence[tuple[str, str, bool]]) -> tuple[np.ndarray, np.ndarray]:
        """(dense cosine, lexical cosine) of each pair."""
        pos = {ident: i for i, ident in enumerate(self.ids)}
        a = np.array([pos[p[0]] for p in pairs], dtype=int)
        b = np.array([pos[p[1]] for p in pairs], dtype=int)
        if len(a) == 0:
            return np.zeros(0), np.zeros(0)
        dense = np.einsum("ij,ij->i", self.vectors[a], self.vectors[b])
        lex = np.asarray(self.lexical[a].multiply(self.lexical[b]).sum(axis=1)).ravel()
        return dense.astype(float), lex.astype(float)

    def headline_cosines(self, pairs: Sequence[tuple[str, str, bool]]) -> np.ndarray:
        """Cosine of the two headlines' vectors of each pair (NaN without headline vectors)."""
        if self.headlines is None:
            return np.full(len(pairs), np.nan)
        pos = {ident: i for i, ident in enumerate(self.ids)}
        a = np.array([pos[p[0]] for p in pairs], dtype=int)
        b = np.array([pos[p[1]] for p in pairs], dtype=int)
        return np.einsum("ij,ij->i", self.headlines[a], self.headlines[b]).astype(float) if len(a) else np.zeros(0)

    def cross(self, pairs: Sequence[tuple[str, str, bool]]) -> np.ndarray:
        lang = dict(zip(self.ids, self.langs))
        return np.array([lang[a] != lang[b] for a, b, _ in pairs], dtype=bool)


def story_labels(ds: Dataset, min_score: float | None) -> Labels:
    """Same-story labels: every pair of clustered articles, or the set's pairs against `min_score`."""
    known = {a.id for a in ds.articles}
    if ds.clusters:
        clustered = sorted(i for i in ds.clusters if i in known)
        return [(a, b, ds.clusters[a] == ds.clusters[b]) for a, b in itertools.combinations(clustered, 2)]
    if min_score is None:
        return []
    return [(a, b, s >= min_score) for a, b, s in ds.pairs if a in known and b in known and a != b]


def related_labels(ds: Dataset, seed: int = 0, max_related: int = MAX_RELATED) -> Labels:
    """Related pairs (score >= 0.5, same cluster) against random and labelled-unrelated pairs."""
    rng = random.Random(f"{seed}:{ds.name}")
    known = {a.id for a in ds.articles}
    pairs = [(a, b, s) for a, b, s in ds.pairs if a in known and b in known and a != b]
    positives = [(a, b) for a, b, s in pairs if s >= RELATED_MIN]
    positives += [(a, b) for a, b, same in story_labels(Dataset(ds.name, ds.articles, [], ds.clusters), None) if same]
    if len(positives) > max_related:
        positives = rng.sample(positives, max_related)
    zeros = [(a, b) for a, b, s in pairs if s == 0.0] if ds.name in ZERO_IS_UNRELATED else []
    taken = {frozenset(p[:2]) for p in pairs} | {frozenset(p) for p in positives}
    ids = sorted(known)
    randoms: list[tuple[str, str]] = []
    for _ in range(20 * len(positives)):
        if len(randoms) >= len(positives) or len(ids) < 2:
            break
        a, b = rng.sample(ids, 2)
        if frozenset((a, b)) not in taken and (not ds.clusters or ds.clusters.get(a) != ds.clusters.get(b)):
            taken.add(frozenset((a, b)))
            randoms.append((a, b))
    return [(a, b, True) for a, b in positives] + [(a, b, False) for a, b in zeros[:max_related] + randoms]


def restrict(ds: Dataset, story: Labels, related: Labels, whole: bool) -> Dataset:
    """Keep the articles that labels use (or all of them, for sets ranked whole)."""
    if whole:
        return ds
    used = {x for a, b, _ in story + related for x in (a, b)}
    return Dataset(ds.name, [a for a in ds.articles if a.id in used], ds.pairs, ds.clusters)


def stsb_news(ds: Dataset) -> Dataset:
    """STS-B pairs whose sentences come from news headlines."""
    source = {a.id: a.source for a in ds.articles}
    return Dataset(ds.name, ds.articles, [p for p in ds.pairs if source.get(p[0]) in STSB_SOURCES], ds.clusters)


def encode_set(ds: Dataset, embedder, story: Labels, related: Labels, whole: bool) -> Encoded:  # noqa: ANN001
    """Embed a set's labelled articles; lexical statistics are fitted on that set's texts."""
    ds = restrict(ds, story, related, whole)
    texts = [embedder.text_of(a) for a in ds.articles]
    text_of = dict(zip((a.id for a in ds.articles), texts))
    # one text twice is a copy by rule, whatever its label says (scraped error pages, mostly)
    story, related = ([p for p in labels if text_of[p[0]] != text_of[p[1]]] for labels in (story, related))
    stats = lexical.LexicalStats()
    stats.add(texts)
    log.info("%s: embedding %d articles", ds.name, len(texts))
    ts = np.array([a.published_ts if a.published_ts is not None else np.nan for a in ds.articles], dtype=float)
    return Encoded(ds.name, [a.id for a in ds.articles], [a.lang for a in ds.articles],
                   embedder.encode(texts), lexical.vectors(texts, stats.idf), story, related, ts,
                   encode_headlines(embedder, ds.articles))


def model_languages(model: str) -> tuple[str, ...] | None:
    """Languages a model was trained for, from distill.json beside it (plus English); None when unknown."""
    from recsys.embed import builtin_model_path

    folder = builtin_model_path(model) if model.startswith("builtin:") else Path(model)
    card = folder / "distill.json"
    if not card.is_file():
        return None
    return tuple(sorted({"en", *json.loads(card.read_text(encoding="utf-8"))["config"]["langs"]}))


def in_languages(ds: Dataset, langs: Sequence[str] | None) -> Dataset:
    """Only the articles written in `langs` (None: all): a model cannot place text it never learnt,
    so such pairs would calibrate its thresholds on noise."""
    if langs is None:
        return ds
    kept = [a for a in ds.articles if a.lang in langs]
    return Dataset(ds.name, kept, ds.pairs, ds.clusters)


def load_sets(data: Path, sample: Path | None, embedder, seed: int = 0,  # noqa: ANN001
              langs: Sequence[str] | None = None) -> list[Encoded]:
    """Every calibration set found under `data`, plus the sample corpus (clusters) when given."""
    found: list[tuple[Dataset, float | None]] = []
    for name in dict.fromkeys([*STORY_SETS, *RELATED_SETS]):
        folder = data / name
        if not (folder / "articles.jsonl.gz").exists():
            log.warning("%s: not found, skipped", folder)
            continue
        ds = load_dataset(folder)
        found.append((stsb_news(ds) if name == "stsb_multi_mt" else ds, STORY_SETS.get(name)))
    if sample is not None:
        found.append((load_dataset(sample), None))
    encoded = []
    for ds, min_score in ((in_languages(ds, langs), m) for ds, m in found):
        story = story_labels(ds, min_score)
        related = related_labels(ds, seed) if ds.name in RELATED_SETS or ds.clusters else []
        encoded.append(encode_set(ds, embedder, story, related, whole=bool(story)))
    return encoded


@dataclass
class PairTable:
    """Labelled pairs of several sets, flattened: scores, label, language crossing, fit half."""

    sets: np.ndarray
    dense: np.ndarray
    lexical: np.ndarray
    gold: np.ndarray
    cross: np.ndarray
    fit: np.ndarray
    days: np.ndarray
    headline: np.ndarray  # cosine of the headline vectors (NaN where unknown)


def pair_table(sets: Sequence[Encoded], which: str) -> PairTable:
    """The story or related labels of every set, with their scores."""
    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("sets", "dense", "lexical", "gold", "cross", "fit", "days", "headline")}
    for enc in sets:
        labels = getattr(enc, which)
        dense, lex = enc.features(labels)
        cols["sets"].append(np.array([enc.name] * len(labels), dtype=object))
        cols["dense"].append(dense)
        cols["lexical"].append(lex)
        cols["gold"].append(np.array([g for _, _, g in labels], dtype=bool))
        cols["cross"].append(enc.cross(labels))
        cols["fit"].append(np.array([fit_half(a, b) for a, b, _ in labels], dtype=bool))
        cols["days"].append(enc.days_apart(labels))
        cols["headline"].append(enc.headline_cosines(labels))
    return PairTable(**{k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()})


def story_partners(enc: Encoded) -> dict[int, list[int]]:
    """Row -> rows of the same story (or, for sets without story labels, of labelled related
    articles), for the MRR of a ranking over the whole set."""
    pos = {ident: i for i, ident in enumerate(enc.ids)}
    partners: dict[int, list[int]] = {}
    labels = enc.story if any(same for _, _, same in enc.story) else enc.related
    for a, b, same in labels:
        if same:
            partners.setdefault(pos[a], []).append(pos[b])
            partners.setdefault(pos[b], []).append(pos[a])
    return partners


def translation_pairs(parallel: Path, langs: Sequence[str] = ("uk", "ru", "de"), per_lang: int = 200,
                      ) -> list[tuple[str, str, str]]:
    """Held-out human-reference translation pairs (en, xx, lang) of the languages that are present."""
    from recsys.parallel import load_pairs

    present = tuple(lang for lang in langs if (parallel / f"train.en-{lang}.tsv.gz").exists())
    if not present:
        log.warning("%s: no translation pairs; the copy threshold falls back to the story thresholds", parallel)
        return []
    _, heldout = load_pairs(parallel, present, max_pairs_per_lang=1, heldout_langs=present,
                            heldout_per_lang=per_lang)
    return heldout
