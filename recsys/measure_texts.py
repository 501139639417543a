"""Texts `recsys measure-backends` encodes, read from the shared data folder: headlines, leads cut
to LEAD_CHARS, human-reference translation pairs and the paraphraser_ru ranking task and its scores."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np

LEAD_CHARS = 600


def _rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _tsv(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [line.rstrip("\n").split("\t") for line in fh]


def headlines(data: Path, n: int, rng: random.Random) -> list[str]:
    """Half paraphraser_ru (ru), half ruwa_events_en (en) titles, sampled."""
    out = []
    for name, share in (("paraphraser_ru", n // 2), ("ruwa_events_en", n - n // 2)):
        titles = sorted({r["title"] for r in _rows(data / name / "articles.jsonl.gz") if r["title"].strip()})
        out += rng.sample(titles, min(share, len(titles)))
    rng.shuffle(out)
    return out


def leads(data: Path, n: int, rng: random.Random, skip: set[str]) -> tuple[list[str], dict[str, int]]:
    """Article texts cut to 600 characters: ru (tgcontest), de and en (semeval, tgcontest), uk (WMT references).

    No set here has Ukrainian articles; Ukrainian WMT reference paragraphs of 300+ characters stand in.
    """
    by_lang: dict[str, list[str]] = {}
    for name in ("tgcontest_toloka_pairs", "semeval2022_task8_subset"):
        for r in _rows(data / name / "articles.jsonl.gz"):
            text = (r.get("text") or "").strip()
            if len(text) >= 100:
                by_lang.setdefault(r["lang"], []).append(text[:LEAD_CHARS])
    by_lang["uk"] = [row[1][:LEAD_CHARS] for row in _tsv(data / "parallel" / "train.en-uk.tsv.gz")
                     if len(row) == 3 and _is_reference(row[2]) and len(row[1]) >= 300 and row[1] not in skip]
    picked: list[tuple[str, str]] = []
    for lang, quota in (("uk", n // 5), ("ru", n // 5), ("de", n // 4), ("en", n)):
        texts = by_lang.get(lang, [])
        picked += [(lang, t) for t in rng.sample(texts, min(quota, n - len(picked), len(texts)))]
    others = [(lang, t) for lang, texts in sorted(by_lang.items()) if lang not in ("uk", "ru", "de", "en")
              for t in texts]
    picked += rng.sample(others, min(n - len(picked), len(others)))
    rng.shuffle(picked)
    counts: dict[str, int] = {}
    for lang, _ in picked:
        counts[lang] = counts.get(lang, 0) + 1
    return [t for _, t in picked], dict(sorted(counts.items()))


def _is_reference(origin: str) -> bool:
    return "wmt2" in origin and "-ref" in origin


def translation_pairs(data: Path, lang: str, n: int, rng: random.Random) -> list[tuple[str, str]]:
    """(translation, English) human WMT references, 30-300 characters, both sides unique, sampled."""
    seen_en, seen_xx, pairs = set(), set(), []
    for row in _tsv(data / "parallel" / f"train.en-{lang}.tsv.gz"):
        if len(row) != 3 or not _is_reference(row[2]) or not 30 <= len(row[0]) <= 300:
            continue
        if row[0] not in seen_en and row[1] not in seen_xx:
            seen_en.add(row[0]), seen_xx.add(row[1])
            pairs.append((row[1], row[0]))
    return rng.sample(pairs, min(n, len(pairs)))


def paraphrase_task(data: Path, queries: int, pool: int, rng: random.Random) -> dict:
    """Query headlines with precise-paraphrase partners (score 1.0), and the pool they are ranked in.

    The pool holds every query and partner, topped up with other paraphraser headlines (pool 0: all of them).
    """
    folder = data / "paraphraser_ru"
    titles = {r["id"]: r["title"] for r in _rows(folder / "articles.jsonl.gz")}
    partners: dict[str, set[str]] = {}
    for r in _rows(folder / "pairs.jsonl.gz"):
        if r["score"] == 1.0 and r["a"] in titles and r["b"] in titles and r["a"] != r["b"]:
            partners.setdefault(r["a"], set()).add(r["b"])
            partners.setdefault(r["b"], set()).add(r["a"])
    chosen = rng.sample(sorted(partners), min(queries, len(partners)))
    needed = sorted(set(chosen) | {p for q in chosen for p in partners[q]})
    others = sorted(set(titles) - set(needed))
    extra = others if pool <= 0 else rng.sample(others, max(0, min(pool - len(needed), len(others))))
    ids = needed + extra
    at = {ident: i for i, ident in enumerate(ids)}
    return {"texts": [titles[i] for i in ids], "queries": [at[q] for q in chosen],
            "partners": [sorted(at[p] for p in partners[q]) for q in chosen]}


def paraphrase_scores(vectors: np.ndarray, task: dict, k: int = 10) -> dict[str, float]:
    """MRR of the best-ranked partner and recall@k (a partner in the top k), the query itself excluded."""
    queries = np.asarray(task["queries"])
    scores = vectors[queries] @ vectors.T
    scores[np.arange(len(queries)), queries] = -np.inf
    ranks = np.array([int((row > row[p].max()).sum()) + 1 for row, p in zip(scores, task["partners"])])
    return {"paraphrase_mrr": float(np.mean(1.0 / ranks)), f"paraphrase_recall@{k}": float(np.mean(ranks <= k))}
