"""Helpers of the concurrent-writer test: the article versions, a slowed embedder, and the body of a
writer process (started with multiprocessing's 'spawn' context, so it is importable by module name)."""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from recsys.article import Article
from recsys.embed import Embedder

SAMPLE = Path(__file__).resolve().parents[1] / "recsys" / "data" / "sample_articles.jsonl"
VERSIONS = 4  # texts each id takes in turn

log = logging.getLogger(__name__)


def sample_rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]


def version(rows: Sequence[dict], ident: str, number: int, v: int) -> Article:
    """Version `v` of article `ident` (the `number`-th id): every (id, version) has its own sample text."""
    row = rows[(number * VERSIONS + v) % len(rows)]
    return Article(id=ident, url=f"https://t.example/{ident}", title=row["title"], text=row["text"], lang=row["lang"],
                   published_at=row.get("published_at"), source=row.get("source"), section=row.get("section"))


def slowed(embedder: Embedder, delay: float, hook: Callable[[], None] | None = None) -> Embedder:
    """A copy of the embedder whose encode waits `delay` s (and first calls `hook`): it widens the window
    between a writer's read of what is stored and its write, where the races live."""
    slow = copy.copy(embedder)
    base = embedder.encode

    def encode(texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if hook is not None:
            hook()
        time.sleep(delay)
        return base(texts, progress=progress)

    slow.encode = encode  # type: ignore[method-assign]
    return slow


def run_writer(settings: object, first: list[Article], rounds: list[tuple[list[Article], list[str]]],
               read_done: object, go: object) -> None:
    """One writer process: an upsert of `first` that stops after reading the store (sets `read_done`,
    waits for `go`), then `rounds` of (upsert batch, ids to delete) with a slowed embedder."""
    from recsys.embed import load_embedder
    from recsys.engine import open_engine
    from recsys.errors import NotFound

    base = load_embedder(settings)  # type: ignore[arg-type]
    calls = []

    def pause_once() -> None:
        if not calls:
            calls.append(1)
            read_done.set()  # type: ignore[attr-defined]
            if not go.wait(60):  # type: ignore[attr-defined]
                raise TimeoutError("the test never let the writer go on")

    engine = open_engine(settings, embedder=slowed(base, 0.0, pause_once))  # type: ignore[arg-type]
    engine.upsert(first)
    engine.embedder = slowed(base, 0.003)
    for batch, deletes in rounds:
        engine.upsert(batch)
        for ident in deletes:
            try:
                engine.delete(ident)
            except NotFound:
                pass
    engine.store.close()


def random_rounds(rows: Sequence[dict], ids: Sequence[str], number_of: dict[str, int], count: int, seed: int
                  ) -> list[tuple[list[Article], list[str]]]:
    """`count` rounds of a batch of 6 ids at random versions and, one time in three, a delete."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        batch = [version(rows, i, number_of[i], rng.randrange(VERSIONS)) for i in rng.sample(list(ids), 6)]
        out.append((batch, [rng.choice(ids)] if rng.random() < 0.34 else []))
    return out
