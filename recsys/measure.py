"""`recsys measure`: the model-quality table of the shipped student, its teacher and a TF-IDF baseline.

Tasks, on ../shared/data (never trained on):
- cross-lingual top-1 for uk->en, en->uk, ru->en on the held-out translation pairs of `distill` (human
  references of whole WMT22 test sets that `distill` never trains on: split by test set, not by sentence);
- STS Spearman on stsb_multi_mt dev for en, ru, de, pl;
- paraphraser_ru headline retrieval: is the paraphrase partner in the top 10 of all headlines;
- encoding speed, student versus teacher, in the same run.
"""

from __future__ import annotations

import gzip
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from recsys import lexical, metrics

Encoder = Callable[[Sequence[str]], object]  # dense array or sparse rows, each row unit length
STS_LANGS = ("en", "ru", "de", "pl")


def _rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dense_encoder(model_name: str) -> Encoder:
    from recsys.embed import load_embedder
    from recsys.settings import Settings

    embedder = load_embedder(Settings(model=model_name))
    return lambda texts: embedder.encode(list(texts))


def tfidf_encoder(texts: Sequence[str]) -> object:
    stats = lexical.LexicalStats()
    stats.add(texts)
    return lexical.vectors(texts, stats.idf)


def _gram(a: object, b: object) -> np.ndarray:
    product = a @ b.T
    return product.toarray() if hasattr(product, "toarray") else np.asarray(product)


def top1(src: object, tgt: object) -> float:
    """Share of rows of src whose nearest row of tgt (by cosine) is the row with the same index."""
    src, tgt = _unit(src), _unit(tgt)
    hits = 0
    for start in range(0, src.shape[0], 2048):  # chunks keep the score matrix small
        gram = _gram(src[start : start + 2048], tgt)
        hits += int((np.argmax(gram, axis=1) == np.arange(start, start + gram.shape[0])).sum())
    return hits / max(src.shape[0], 1)


def _unit(rows: object) -> object:
    if hasattr(rows, "toarray"):  # sparse rows come unit-length from lexical.vectors / hybrid_encoder
        return rows
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _joint(encode: Encoder, left: Sequence[str], right: Sequence[str]) -> tuple[object, object]:
    both = encode([*left, *right])  # one fit for TF-IDF, so both sides share the IDF
    return both[: len(left)], both[len(left):]


def crosslingual(encode: Encoder, heldout: Sequence[tuple[str, str, str]]) -> dict[str, float]:
    out = {}
    for lang in sorted({p[2] for p in heldout}):
        en = [p[0] for p in heldout if p[2] == lang]
        xx = [p[1] for p in heldout if p[2] == lang]
        v_xx, v_en = _joint(encode, xx, en)
        out[f"{lang}->en"] = top1(v_xx, v_en)
        if lang == "uk":
            out["en->uk"] = top1(v_en, v_xx)
    return out


def sts(encode: Encoder, data: Path) -> dict[str, float]:
    folder = data / "stsb_multi_mt"
    text = {r["id"]: r["title"] for r in _rows(folder / "articles.jsonl.gz")}
    by_lang: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
    for r in _rows(folder / "pairs.jsonl.gz"):
        a_lang, b_lang = r["lang_pair"].split("-")
        if r.get("split") == "dev" and a_lang == b_lang and a_lang in STS_LANGS:
            by_lang[a_lang].append((text[r["a"]], text[r["b"]], float(r["score"])))
    out = {}
    for lang in STS_LANGS:
        rows = by_lang[lang]
        va, vb = _joint(encode, [r[0] for r in rows], [r[1] for r in rows])
        sims = np.asarray(_rowwise(va, vb))
        out[f"sts_{lang}"] = metrics.spearman(sims.tolist(), [r[2] for r in rows])
    return out


def _rowwise(a: object, b: object) -> np.ndarray:
    product = a.multiply(b).sum(axis=1) if hasattr(a, "multiply") else (np.asarray(a) * np.asarray(b)).sum(axis=1)
    return np.asarray(product).ravel()


def paraphrase_retrieval(encode: Encoder, data: Path, k: int = 10) -> dict[str, float]:
    folder = data / "paraphraser_ru"
    articles = _rows(folder / "articles.jsonl.gz")
    pos = {r["id"]: i for i, r in enumerate(articles)}
    partners: dict[int, set[int]] = defaultdict(set)
    for r in _rows(folder / "pairs.jsonl.gz"):
        if r["score"] >= 0.5 and r["a"] in pos and r["b"] in pos and r["a"] != r["b"]:
            partners[pos[r["a"]]].add(pos[r["b"]])
            partners[pos[r["b"]]].add(pos[r["a"]])
    vectors = encode([r["title"] for r in articles])
    queries = sorted(partners)
    recalls, rrs = [], []
    for start in range(0, len(queries), 512):
        chunk = queries[start : start + 512]
        scores = _gram(vectors[chunk], vectors)
        scores[np.arange(len(chunk)), chunk] = -np.inf  # never the headline itself
        for row, q in zip(scores, chunk):
            best = max(row[p] for p in partners[q])
            rank = int((row > best).sum()) + 1
            recalls.append(sum(int((row > row[p]).sum()) < k for p in partners[q]) / len(partners[q]))
            rrs.append(1.0 / rank)
    return {f"paraphrase_recall@{k}": float(np.mean(recalls)), "paraphrase_mrr": float(np.mean(rrs)),
            "paraphrase_queries": len(queries)}


SPEED_ROUNDS = 3


def speed(encode: Encoder, texts: Sequence[str]) -> float:
    encode(list(texts[:32]))
    start = time.perf_counter()
    encode(list(texts))
    return len(texts) / (time.perf_counter() - start)


def hybrid_encoder(dense: Encoder, weight: float) -> Encoder:
    """Rows whose dot product is the service's blend (dense + w * lexical) / (1 + w)."""
    from scipy import sparse

    def encode(texts: Sequence[str]) -> object:
        d = sparse.csr_matrix(np.asarray(dense(texts)) * np.sqrt(1.0 / (1.0 + weight)))
        return sparse.hstack([d, tfidf_encoder(texts) * np.sqrt(weight / (1.0 + weight))]).tocsr()

    return encode


def run(data: Path, student: str, teacher: str, heldout_per_lang: int, lexical_weight: float,
        others: Sequence[str] = ()) -> dict:
    """Every task for every system (`others`: more models, a column each, by name); numbers as
    measured now, nothing carried over."""
    from recsys.distill import load_pairs

    _, heldout = load_pairs(data / "parallel", ("uk", "ru"), heldout_per_lang=heldout_per_lang)
    dense = {"student": dense_encoder(student), "teacher": dense_encoder(teacher),
             **{name: dense_encoder(name) for name in others if name not in (student, teacher)}}
    systems: dict[str, Encoder] = {**dense, "tfidf": tfidf_encoder,
                                   "hybrid (student + tfidf)": hybrid_encoder(dense["student"], lexical_weight)}
    results = {}
    for name, encode in systems.items():
        results[name] = {**crosslingual(encode, heldout), **sts(encode, data), **paraphrase_retrieval(encode, data)}
    texts = [p[0] for p in heldout][:2000]
    # interleaved rounds, median: on a shared machine one pass per model measures the load as much as the model
    rounds = [{name: speed(dense[name], texts) for name in dense} for _ in range(SPEED_ROUNDS)]
    rates = {name: sorted(r[name] for r in rounds)[SPEED_ROUNDS // 2] for name in dense}
    return {"student": student, "teacher": teacher, "others": [n for n in dense if n not in ("student", "teacher")],
            "heldout_pairs": len(heldout), "lexical_weight": lexical_weight,
            "results": results, "sentences_per_s": rates, "student_speedup": rates["student"] / rates["teacher"]}


def markdown(report: dict) -> str:
    names = list(report["results"])
    keys = list(next(iter(report["results"].values())))
    lines = ["# Model quality", "",
             f"Student `{report['student']}`, teacher `{report['teacher']}`, {report['heldout_pairs']} held-out "
             f"translation pairs (human references of WMT22's uk->en and ru->en test sets, "
             f"whole sets that recsys never trains on); hybrid weight {report['lexical_weight']}. Regenerate with "
             f"`{report.get('command', 'recsys measure --data ../shared/data --out docs/model_quality')}`.", "",
             "| task | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key in keys:
        cells = [report["results"][n][key] for n in names]
        lines.append(f"| {key} | " + " | ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in cells) + " |")
    rates = report["sentences_per_s"]
    lines += ["", f"Encoding speed in the same run: student {rates['student']:.0f} sentences/s, teacher "
              f"{rates['teacher']:.0f} sentences/s ({report['student_speedup']:.0f}× faster)"
              + "".join(f"; {n} {rates[n]:.0f} sentences/s" for n in report.get("others", [])) + ".", ""]
    return "\n".join(lines)
