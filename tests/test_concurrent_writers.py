"""Writes are atomic per article under any mix of writers (issue 11, item 5): threads of one engine,
other engines, spawned writer processes and `recsys ingest` change, delete and re-ingest the same
articles; afterwards every stored article has the vector of its stored text, is found by its own text,
and deleted articles are gone from the store and from every engine's index and answers."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from recsys.article import Article
from recsys.embed import Embedder, encode_headlines
from recsys.engine import Engine, open_engine
from recsys.errors import NotFound
from recsys.recommend import Filters
from recsys.settings import Settings
from writer_process import random_rounds, run_writer, sample_rows, slowed, version

ROOT = Path(__file__).resolve().parents[1]


def _vector_problems(engine: Engine, embedder: Embedder) -> dict[str, list[str]]:
    """Stored articles whose vector (or headline vector) is not the embedder's vector of their stored text."""
    stored = {a.id: a for a in engine.store.get_many([r[0] for r in engine.store._query("SELECT id FROM articles")])}
    found: dict[str, list[str]] = {"vectorless": [], "foreign_vector": [], "foreign_headline": []}
    indexed = {}
    for rows, matrix, headlines in engine.store.vector_rows(embedder.name):
        indexed.update({r["id"]: (matrix[i], headlines[i]) for i, r in enumerate(rows)})
    ids = sorted(stored)
    want = embedder.encode([embedder.text_of(stored[i]) for i in ids])
    want_heads = encode_headlines(embedder, [stored[i] for i in ids])
    for i, ident in enumerate(ids):
        if ident not in indexed:
            found["vectorless"].append(ident)
            continue
        vector, headline = indexed[ident]
        if float(vector @ want[i]) < 0.9999:
            found["foreign_vector"].append(ident)
        if not np.allclose(headline, want_heads[i], atol=1e-4):
            found["foreign_headline"].append(ident)
    return found


def _index_problems(name: str, engine: Engine, embedder: Embedder, absent: Sequence[str]) -> dict[str, list[str]]:
    """What the engine's in-memory index serves wrongly once synced: deleted articles, stored ones it lacks
    or does not find first by their own text, and answers naming deleted articles."""
    engine.sync()
    stored = {a.id: a for a in engine.store.get_many([r[0] for r in engine.store._query("SELECT id FROM articles")])}
    live = engine.live
    snap = live.catalog.snapshot()
    served = set(live.catalog.row_of_id)
    found = {f"{name}:serves_deleted": sorted(served - stored.keys()),
             f"{name}:not_indexed": sorted(stored.keys() - served), f"{name}:not_first_by_own_text": [],
             f"{name}:answers_deleted": []}
    for ident, article in sorted(stored.items()):
        rows, scores = live.search(embedder.encode([embedder.text_of(article)])[0], live.ntotal)
        hits = [(snap.ids[r], s) for r, s in zip(rows, scores) if r < snap.n and snap.col["alive"][r]]
        if not hits or ident not in {i for i, s in hits if s >= hits[0][1] - 1e-4}:  # ties: exact duplicates
            found[f"{name}:not_first_by_own_text"].append(ident)
    for ident in absent:  # first: a block that shows a deleted article also marks its row dead
        try:
            engine.related_to_article(ident, Filters(limit=3))
            found[f"{name}:answers_deleted"].append(ident)
        except NotFound:
            pass
    for ident in sorted(stored):
        items = engine.related_to_article(ident, Filters(limit=10, lang_policy="any")).items
        found[f"{name}:answers_deleted"] += [a.id for a, _ in items if a.id not in stored]
    return found


def _once(action) -> object:  # noqa: ANN001
    """A hook that runs `action` on its first call only: another writer's move inside this one's window."""
    done: list[int] = []

    def hook() -> None:
        if not done:
            done.append(1)
            action()

    return hook


def _articles(rows: list[dict], v: int, ids: Sequence[str] = ("x", "y", "z")) -> dict[str, Article]:
    return {i: version(rows, i, n, v) for n, i in enumerate(ids)}


def test_an_unchanged_article_written_after_anothers_edit_keeps_its_own_vector(settings: Settings,  # noqa: ANN001
                                                                               tiny_embedder) -> None:
    rows = sample_rows()
    old, new = _articles(rows, 0), _articles(rows, 1)
    other = open_engine(settings, embedder=tiny_embedder)
    other.upsert(list(old.values()))
    # this writer read x as unchanged (no embedding) and y as changed; x is edited while y is embedded
    writer = open_engine(settings, embedder=slowed(tiny_embedder, 0.0, _once(lambda: other.upsert([new["x"]]))))
    result = writer.upsert([old["x"], new["y"]])
    assert writer.store.get("x") == old["x"]  # the last write wins, with its own vector
    assert result.embedded == 2  # y, then x again once the write found it changed
    assert _vector_problems(writer, tiny_embedder) == {"vectorless": [], "foreign_vector": [], "foreign_headline": []}
    assert not any(_index_problems("writer", writer, tiny_embedder, []).values())
    assert not any(_index_problems("other", other, tiny_embedder, []).values())


def test_a_delete_inside_an_upserts_window_wins(settings: Settings, tiny_embedder) -> None:  # noqa: ANN001
    rows = sample_rows()
    old, new = _articles(rows, 0), _articles(rows, 1)
    other = open_engine(settings, embedder=tiny_embedder)
    other.upsert(list(old.values()))

    def delete() -> None:
        other.delete("x")
        other.delete("z")

    writer = open_engine(settings, embedder=slowed(tiny_embedder, 0.0, _once(delete)))
    result = writer.upsert([old["x"], new["y"], new["z"]])  # x unchanged, z changed: both read before the delete
    assert writer.store.get("x") is None and writer.store.get("z") is None  # no vectorless x, no resurrected z
    assert writer.store.get("y") == new["y"] and result.skipped == 2
    assert _vector_problems(writer, tiny_embedder) == {"vectorless": [], "foreign_vector": [], "foreign_headline": []}
    for name, engine in (("writer", writer), ("other", other)):
        assert not any(_index_problems(name, engine, tiny_embedder, ["x", "z"]).values())


def test_an_upsert_begun_after_a_delete_stores_the_article_again(engine, tiny_embedder) -> None:  # noqa: ANN001
    article = engine.store.get("b2")
    engine.delete("b2")
    assert engine.upsert([article]).inserted == 1
    assert engine.store.get("b2") == article and "b2" in engine.live.catalog.row_of_id
    assert not any(_vector_problems(engine, tiny_embedder).values())


def test_an_article_deleted_by_another_process_leaves_this_ones_index(engine, settings: Settings,  # noqa: ANN001
                                                                     tiny_embedder) -> None:
    other = open_engine(settings, embedder=tiny_embedder)  # e.g. `recsys delete` while the API runs
    other.delete("c2")
    assert not engine.in_sync()
    with pytest.raises(NotFound):
        engine.related_to_article("c2", Filters(limit=3))
    assert "c2" not in engine.live.catalog.row_of_id and engine.in_sync()
    assert not any(_index_problems("api", engine, tiny_embedder, ["c2"]).values())


def _ingest_process(settings: Settings, articles: list[Article], folder: Path) -> subprocess.Popen:
    path = folder / "reingest.jsonl"
    path.write_text("".join(json.dumps(a.model_dump(mode="json"), ensure_ascii=False) + "\n" for a in articles),
                    encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RECSYS_MODEL": settings.model,
           "RECSYS_DB_PATH": str(settings.db_path), "RECSYS_INDEX_DIR": str(settings.index_dir)}
    return subprocess.Popen([sys.executable, "-m", "recsys.cli", "ingest", str(path), "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _threads(main: Engine, observer: Engine, rows: list[dict], pool: list[str], number_of: dict[str, int],
             errors: list[BaseException]) -> list[threading.Thread]:
    """Two writer threads on the shared engine (the API's request threads) and a reader on another engine."""

    def write(seed: int) -> None:
        for batch, deletes in random_rounds(rows, pool, number_of, 12, seed):
            main.upsert(batch)
            for ident in deletes:
                try:
                    main.delete(ident)
                except NotFound:
                    pass

    def read(_: int) -> None:
        for ident in pool * 2:
            try:
                observer.related_to_article(ident, Filters(limit=5))
            except NotFound:
                pass

    def guarded(target, seed: int) -> None:  # noqa: ANN001
        try:
            target(seed)
        except BaseException as exc:  # the test fails with it, after the other writers are done
            errors.append(exc)
            raise

    return [threading.Thread(target=guarded, args=job) for job in ((write, 10), (write, 11), (read, 0))]


def _writer_processes(settings: Settings, rows: list[dict], number_of: dict[str, int], deleted: list[str],
                      edited: list[str], pool: list[str]) -> tuple[list, list, object]:
    """Two spawned writer processes, each paused inside its first upsert after reading the store: writer 0
    re-sends its half of `deleted` and `edited` unchanged (nothing to embed), writer 1 its half of
    `deleted` changed; then each runs random rounds over `pool`. (processes, their read events, go)."""
    ctx = multiprocessing.get_context("spawn")
    go, read_done = ctx.Event(), [ctx.Event(), ctx.Event()]
    firsts = [[version(rows, i, number_of[i], 0) for i in deleted[:3] + edited[:3]] +
              [version(rows, "p0", number_of["p0"], 1)],
              [version(rows, i, number_of[i], 1) for i in deleted[3:]] +
              [version(rows, i, number_of[i], 0) for i in edited[3:]]]
    procs = [ctx.Process(target=run_writer, args=(settings, firsts[n], random_rounds(rows, pool, number_of, 12, n),
                                                  read_done[n], go)) for n in range(2)]
    for proc in procs:
        proc.start()
    return procs, read_done, go


def test_writers_of_every_kind_leave_each_article_with_its_own_vector(settings: Settings, tiny_embedder,  # noqa: ANN001
                                                                       tmp_path: Path) -> None:
    rows = sample_rows()
    deleted, edited, pool = [f"d{i}" for i in range(6)], [f"u{i}" for i in range(6)], [f"p{i}" for i in range(30)]
    number_of = {ident: n for n, ident in enumerate(deleted + edited + pool)}
    main = open_engine(settings, embedder=slowed(tiny_embedder, 0.002))
    main.upsert([version(rows, i, number_of[i], 0) for i in number_of])
    observer = open_engine(settings, embedder=tiny_embedder)  # another server process: it only reads
    procs, read_done, go = _writer_processes(settings, rows, number_of, deleted, edited, pool)
    ingest = _ingest_process(settings, [version(rows, i, number_of[i], 2) for i in pool], tmp_path)
    errors: list[BaseException] = []
    try:
        assert all(event.wait(120) for event in read_done), "a writer process did not start"
        for ident in deleted:  # while both processes hold what they read of these ids
            main.delete(ident)
        main.upsert([version(rows, i, number_of[i], 3) for i in edited])
        go.set()
        threads = _threads(main, observer, rows, pool, number_of, errors)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        go.set()
        for proc in procs:
            proc.join(120)
        out, err = ingest.communicate(timeout=120)
    assert not errors and [p.exitcode for p in procs] == [0, 0], errors
    assert ingest.returncode == 0 and json.loads(out.splitlines()[-1])["stored"] == len(pool), err[-2000:]

    fresh = open_engine(settings, embedder=tiny_embedder)  # a process started afterwards
    problems = _vector_problems(main, tiny_embedder)
    problems["resurrected"] = sorted(i for i in deleted if main.store.get(i) is not None)
    absent = [i for i in number_of if main.store.get(i) is None]
    for name, engine in (("main", main), ("observer", observer), ("fresh", fresh)):
        problems.update(_index_problems(name, engine, tiny_embedder, absent))
    counts = {k: len(v) for k, v in problems.items()}
    assert main.store._query("PRAGMA integrity_check")[0][0] == "ok"
    assert not any(counts.values()), f"{counts}\n{ {k: v for k, v in problems.items() if v} }"
