"""Training text for distillation: the train.en-XX.tsv.gz pairs (read, cleaned, split) and monolingual sentences."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

Pair = tuple[str, str, str]  # (english, translation, lang)
NO_TRANSLATION = "NO TRANSLATION AVAILABLE"  # the placeholder of most wmt24 "-ref" rows
MAX_ENGLISH_PER_TRANSLATION = 20  # more: a canned answer ("Відновлення сесії.") to a prompt-injection test


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def origin_matches(origin: str, origins: Sequence[str] | None) -> bool:
    """True when ``origin`` equals one of ``origins`` or has it as a dash-separated part ("ref", "wmt24")."""
    return origins is None or any(origin == o or o in origin.split("-") for o in origins)


def _read_tsv(path: Path) -> list[tuple[str, str, str]]:
    """Rows (en, xx, origin) of one file, without the junk that the WMT dumps hold (see ``is_clean``)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [(r[0].strip(), r[1].strip(), r[2].strip()) for r in (line.rstrip("\n").split("\t") for line in f)
                if len(r) >= 3]
    english_of: dict[str, set[str]] = {}
    for en, xx, _ in rows:
        english_of.setdefault(xx, set()).add(en)
    kept = [r for r in rows if is_clean(r[0], r[1]) and len(english_of[r[1]]) <= MAX_ENGLISH_PER_TRANSLATION]
    log.info("%s: %d rows, %d dropped as junk", path.name, len(rows), len(rows) - len(kept))
    return kept


def is_clean(en: str, xx: str) -> bool:
    """False for empty, untranslated, placeholder ("NO TRANSLATION AVAILABLE") or length-mismatched pairs."""
    if not en or not xx or en == xx or NO_TRANSLATION in (en.upper(), xx.upper()):
        return False
    short, long = sorted((len(en), len(xx)))
    return long <= 3 * short + 10


HELDOUT_SETS = ("wmt22-uk-en", "wmt22-ru-en", "wmt22-de-en", "wmt22-cs-en")
"""Whole test sets that never train: WMT22's documents written in uk, ru, de, cs, with their English
references and every system's translation ("-ref" and "-hyp" rows). Their documents appear in no other set,
so a model is measured on text it has never seen from documents it has never seen (split by test set)."""


def in_heldout_set(origin: str, sets: Sequence[str] = HELDOUT_SETS) -> bool:
    """True when a row's origin ("wmt22-uk-en-hyp") belongs to one of the held-out test sets."""
    return any(origin.startswith(s + "-") for s in sets)


def _heldout_refs(rows: list[tuple[str, str, str]], lang: str, per_lang: int, sets: Sequence[str]) -> list[Pair]:
    """The ``per_lang`` human-reference pairs of lang's held-out sets with the lowest English hash, one per sentence."""
    refs = {f"{s}-ref" for s in sets if lang in s.split("-")}
    first: dict[str, str] = {}
    for en, xx, origin in rows:
        if origin in refs:
            first.setdefault(en, xx)
    used_xx: set[str] = set()
    picked: list[Pair] = []
    for en in sorted(first, key=_hash64):
        if len(used_xx) >= per_lang:
            break
        if first[en] not in used_xx:
            used_xx.add(first[en])
            picked.append((en, first[en], lang))
    return picked


def load_pairs(data_dir: Path, langs: Sequence[str], origins: Sequence[str] | None = None,
               max_pairs_per_lang: int | None = None, heldout_langs: Sequence[str] = ("uk", "ru"),
               heldout_per_lang: int = 1000, heldout_sets: Sequence[str] = HELDOUT_SETS,
               ) -> tuple[list[Pair], list[Pair]]:
    """Read ``train.en-XX.tsv.gz`` files and split them into (train, heldout) lists of (en, xx, lang).

    The split is by test set: no row of ``heldout_sets`` trains, nor any pair sharing an English or a
    translated sentence with one. The heldout pairs of a language are ``heldout_per_lang`` human references
    of its held-out sets (lowest English hash), chosen whatever the training ``origins`` so every model is
    measured on the same pairs; a language without a held-out set has none. ``max_pairs_per_lang`` keeps
    the pairs with the lowest English hash (stable; pairs sharing an English sentence stay together)."""
    rows = {lang: _read_tsv(Path(data_dir) / f"train.en-{lang}.tsv.gz") for lang in langs}
    heldout = [p for lang in heldout_langs if lang in rows
               for p in _heldout_refs(rows[lang], lang, heldout_per_lang, heldout_sets)]
    withheld = [(en, xx) for lang_rows in rows.values() for en, xx, origin in lang_rows
                if in_heldout_set(origin, heldout_sets)]
    held_en, held_xx = {en for en, _ in withheld}, {xx for _, xx in withheld}
    train: list[Pair] = []
    for lang, lang_rows in rows.items():
        kept = {(en, xx) for en, xx, origin in lang_rows
                if origin_matches(origin, origins) and en not in held_en and xx not in held_xx}
        ordered = sorted(kept, key=lambda p: (_hash64(p[0]), p))[:max_pairs_per_lang]
        train.extend((en, xx, lang) for en, xx in ordered)
        log.info("en-%s: %d training pairs", lang, len(ordered))
    return train, heldout


def evaluation_sentences(shared: Path) -> set[str]:
    """Sentences that `recsys measure` scores on: stsb_multi_mt outside its train split, paraphraser_ru."""
    banned: set[str] = set()
    sts = Path(shared) / "stsb_multi_mt"
    if (sts / "pairs.jsonl.gz").exists():
        text = {r["id"]: r["title"] for r in map(json.loads, gzip.open(sts / "articles.jsonl.gz", "rt", encoding="utf-8"))}
        for r in map(json.loads, gzip.open(sts / "pairs.jsonl.gz", "rt", encoding="utf-8")):
            if r.get("split") != "train":
                banned |= {text[r["a"]], text[r["b"]]}
    para = Path(shared) / "paraphraser_ru" / "articles.jsonl.gz"
    if para.exists():
        banned |= {r["title"] for r in map(json.loads, gzip.open(para, "rt", encoding="utf-8"))}
    return banned


def monolingual_sentences(shared: Path, langs: Sequence[str]) -> list[str]:
    """Sentences of stsb_multi_mt's train split in ``langs`` (never its dev split, which `recsys measure` scores),
    deduplicated and ordered by hash: text a multilingual teacher embeds in each language's own terms."""
    sts = Path(shared) / "stsb_multi_mt"
    if not (sts / "pairs.jsonl.gz").exists():
        return []
    with gzip.open(sts / "articles.jsonl.gz", "rt", encoding="utf-8") as f:
        text = {r["id"]: r["title"] for r in map(json.loads, f) if r["lang"] in langs}
    with gzip.open(sts / "pairs.jsonl.gz", "rt", encoding="utf-8") as f:
        train = {r[side] for r in map(json.loads, f) if r.get("split") == "train" for side in ("a", "b")}
    return sorted({text[i] for i in train if i in text and text[i]}, key=_hash64)


def pseudo_leads(sentences: Sequence[str], n: int, rng: np.random.Generator, min_chars: int = 300,
                 max_chars: int = 700) -> list[str]:
    """Up to n texts of lead length, each random sentences of one language joined until min_chars is reached."""
    pool = [s for s in sentences if len(s) < max_chars]
    out: list[str] = []
    parts: list[str] = []
    length = 0
    for i in rng.permutation(len(pool)):
        if len(out) == n:
            break
        parts.append(pool[i])
        length += len(pool[i])
        if length >= min_chars:  # a short remainder at the end of the pool is no lead
            out.append(" ".join(parts)[:max_chars])
            parts, length = [], 0
    return out


def lead_texts(train: Sequence[Pair], per_lang: int, rng: np.random.Generator) -> list[str]:
    """`per_lang` lead-length texts per language (English and each translated one) from the training pairs."""
    if per_lang <= 0:
        return []
    by_lang: dict[str, list[str]] = {"en": list(dict.fromkeys(p[0] for p in train))}
    for p in train:
        by_lang.setdefault(p[2], []).append(p[1])
    texts = [t for lang in sorted(by_lang) for t in pseudo_leads(by_lang[lang], per_lang, rng)]
    log.info("%d lead-length texts from training sentences (%d languages)", len(texts), len(by_lang))
    return texts
