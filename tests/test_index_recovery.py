"""Start safely: a build that fails to load is set aside, an older one or the store takes its place."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import build_tiny_model, story_articles
from recsys import index as idx
from recsys.api import create_app
from recsys.article import Article
from recsys.embed import load_embedder
from recsys.engine import Engine, open_engine
from recsys.errors import IndexMismatch
from recsys.recommend import Filters
from recsys.settings import Settings

IDS = [a.id for a in story_articles()]


def blocks(engine: Engine) -> dict[str, list[tuple[str, float]]]:
    """Every stored article's default block, as (id, score) pairs."""
    return {i: [(a.id, round(s, 5)) for a, s in engine.related_to_article(i, Filters(limit=5)).items] for i in IDS}


def blocks_of(engine: Engine, ids: list[str]) -> dict[str, list[tuple[str, float]]]:
    return {i: [(a.id, s) for a, s in engine.related_to_article(i, Filters(limit=5)).items] for i in ids}


@pytest.fixture()
def two_builds(engine: Engine) -> tuple[Engine, str, str]:
    """The story corpus in two builds of the same store: (engine, older build, current build)."""
    older = engine.build().manifest.build_id
    current = engine.build().manifest.build_id
    assert (Path(engine.settings.index_dir) / "current").read_text().strip() == current
    return engine, older, current


def _truncate(folder: Path) -> None:
    data = (folder / "index.faiss").read_bytes()
    (folder / "index.faiss").write_bytes(data[: len(data) // 2])


def _wrong_dimension(folder: Path) -> None:
    other = faiss.IndexFlatIP(48)
    other.add(np.random.default_rng(0).standard_normal((17, 48)).astype(np.float32))
    faiss.write_index(other, str(folder / "index.faiss"))


def _wrong_keys(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["vectors"] = manifest.pop("count")
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _short_rows(folder: Path) -> None:
    with np.load(folder / idx.ROWS_FILE) as rows:
        arrays = {name: rows[name] for name in rows.files}
    np.savez(folder / idx.ROWS_FILE, **{**arrays, "vids": arrays["vids"][:-1]})


def _short_headlines(folder: Path) -> None:
    np.save(folder / idx.HEADLINES_FILE, np.load(folder / idx.HEADLINES_FILE)[:10])


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str, str]] = {  # how, set-aside tag, words of the reason
    "truncated faiss": (_truncate, "unreadable", "read error"),
    "zero-byte faiss": (lambda f: (f / "index.faiss").write_bytes(b""), "empty", "index.faiss empty"),
    "missing faiss": (lambda f: (f / "index.faiss").unlink(), "missing", "index.faiss missing"),
    "wrong dimension": (_wrong_dimension, "mismatch", "index.faiss has dimension 48, the manifest 96"),
    "missing manifest": (lambda f: (f / "manifest.json").unlink(), "manifest", "manifest.json is missing"),
    "bad json manifest": (lambda f: (f / "manifest.json").write_text('{"build_id": '), "manifest", "not valid JSON"),
    "wrong keys manifest": (_wrong_keys, "manifest", "wrong keys"),
    "rows mismatch": (_short_rows, "mismatch", "rows.npz has 16 rows, the manifest 17"),
    "headlines mismatch": (_short_headlines, "mismatch", "headlines.npy has shape (10, 96)"),
}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_a_broken_build_is_set_aside_and_the_older_one_serves(two_builds, settings: Settings, tiny_embedder,
                                                              how: str) -> None:  # noqa: ANN001
    engine, older, current = two_builds
    before = blocks(engine)
    corrupt, tag, words = CORRUPTIONS[how]
    builds = Path(settings.index_dir) / "builds"
    corrupt(builds / current)
    reopened = open_engine(settings, embedder=tiny_embedder)
    assert reopened.live.manifest.build_id == older and blocks(reopened) == before
    assert not (builds / current).exists() and (builds / f".broken-{current}-{tag}").is_dir()
    health = reopened.health()
    assert health["status"] == "degraded" and words in health["reason"] and f"serving build {older}" in health["reason"]
    assert reopened.store.count() == 17 and {a.id for a in reopened.store.get_many(IDS)} == set(IDS)


def test_a_pointer_to_a_missing_build_falls_back_to_the_newest(two_builds, settings: Settings,
                                                               tiny_embedder) -> None:  # noqa: ANN001
    engine, older, current = two_builds
    before = blocks(engine)
    (Path(settings.index_dir) / "current").write_text("20000101T000000000000Z-gone\n")
    reopened = open_engine(settings, embedder=tiny_embedder)
    assert reopened.live.manifest.build_id == current and blocks(reopened) == before
    reason = reopened.health()["reason"]
    assert "current names build '20000101T000000000000Z-gone', which does not exist" in reason
    assert sorted(p.name for p in (Path(settings.index_dir) / "builds").iterdir()) == sorted([older, current])


def test_the_next_start_says_the_same_until_a_build_clears_it(two_builds, settings: Settings,
                                                               tiny_embedder) -> None:  # noqa: ANN001
    engine, older, current = two_builds
    _truncate(Path(settings.index_dir) / "builds" / current)
    open_engine(settings, embedder=tiny_embedder)
    again = open_engine(settings, embedder=tiny_embedder)  # `current` still names the build set aside
    assert again.live.manifest.build_id == older
    assert f"(set aside as .broken-{current}-unreadable)" in again.health()["reason"]
    fresh = again.build()
    assert again.health()["status"] == "ok" and again.health()["reason"] is None and again.index_warnings == []
    clean = open_engine(settings, embedder=tiny_embedder)
    assert clean.live.manifest.build_id == fresh.manifest.build_id and clean.health()["status"] == "ok"


def test_with_no_build_left_the_store_rebuilds_it(two_builds, settings: Settings,
                                                  tiny_embedder) -> None:  # noqa: ANN001
    engine, older, current = two_builds
    before = blocks(engine)
    builds = Path(settings.index_dir) / "builds"
    _truncate(builds / current)
    (builds / older / "manifest.json").write_text("not json")
    reopened = open_engine(settings, embedder=tiny_embedder)
    rebuilt = reopened.live.manifest.build_id
    assert rebuilt not in (older, current) and reopened.live.ntotal == 17 and blocks(reopened) == before
    assert (Path(settings.index_dir) / "current").read_text().strip() == rebuilt
    assert {p.name for p in builds.iterdir()} == {rebuilt, f".broken-{current}-unreadable", f".broken-{older}-manifest"}
    reason = reopened.health()["reason"]
    assert "rebuilt from the store" in reason and "read error" in reason and "not valid JSON" in reason
    assert open_engine(settings, embedder=tiny_embedder).health()["status"] == "ok"  # `current` is whole again


def test_a_fallback_build_catches_up_with_the_store(engine: Engine, settings: Settings,
                                                    tiny_embedder) -> None:  # noqa: ANN001
    older = engine.build().manifest.build_id
    new = Article(id="b5", title="Злива затопила набережну Дніпра знову", lang="uk", url="https://news.example/b5",
                  text="Рятувальники відкачують воду з набережної", published_at="2026-10-06T10:00:00+03:00")
    engine.upsert([new])  # after the older build: only the store and the (broken) current build hold it
    engine.delete("b2")
    current = engine.build().manifest.build_id
    before = blocks_of(engine, ["b1", "b3", "b4"])
    _truncate(Path(settings.index_dir) / "builds" / current)
    reopened = open_engine(settings, embedder=tiny_embedder)
    assert reopened.live.manifest.build_id == older and reopened.live.manifest.max_vid < reopened.store.max_vid()
    assert "b5" in [a.id for a, _ in reopened.related_to_article("b1", Filters(limit=3)).items]
    assert [i for i, _ in blocks_of(reopened, ["b1"])["b1"]] == [i for i, _ in before["b1"]]
    assert all("b2" not in [i for i, _ in block] for block in blocks_of(reopened, ["b1", "b3", "b4"]).values())
    assert reopened.store.count() == 17 and reopened.store.get("b5") is not None


def test_a_whole_build_of_another_model_is_kept(two_builds, settings: Settings, tmp_path: Path,
                                                tiny_embedder) -> None:  # noqa: ANN001
    engine, older, current = two_builds
    builds = Path(settings.index_dir) / "builds"
    other_path = build_tiny_model(tmp_path / "other-model", dim=48, seed=1)
    other = settings.model_copy(update={"model": str(other_path)})
    with pytest.raises(IndexMismatch, match="recsys build"):  # current is whole, only of the other model
        open_engine(other, embedder=load_embedder(other))
    assert sorted(p.name for p in builds.iterdir()) == sorted([older, current])
    _truncate(builds / current)  # the current build broken, the older one of another model: kept, not used
    manifest = json.loads((builds / older / "manifest.json").read_text())
    (builds / older / "manifest.json").write_text(json.dumps({**manifest, "model": "someone-else"}))
    reopened = open_engine(settings, embedder=tiny_embedder)
    assert reopened.live.manifest.build_id not in (older, current) and reopened.live.ntotal == 17
    assert (builds / older / "manifest.json").is_file() and (builds / f".broken-{current}-unreadable").is_dir()


def test_the_app_starts_on_a_truncated_build_and_says_degraded(two_builds, settings: Settings) -> None:  # noqa: ANN001
    engine, older, current = two_builds
    with TestClient(create_app(settings)) as client:
        want = client.get("/v1/related/b1").json()
        assert client.get("/healthz").json()["status"] == "ok"
    _truncate(Path(settings.index_dir) / "builds" / current)
    with TestClient(create_app(settings)) as client:
        got = client.get("/v1/related/b1").json()
        health = client.get("/healthz").json()
        metrics = client.get("/metrics").text
    assert got["items"] == want["items"] and len(got["items"]) == 5 and got["index_build"] == older
    assert health["status"] == "degraded" and f"build {current} failed to load (unreadable" in health["reason"]
    assert "read error" in health["reason"] and health["articles"] == 17 and health["index"]["build_id"] == older
    assert health["materialized"] == {"blocks": 0, "pending": 0} and health["model"]
    assert "recsys_index_degraded 1.0" in metrics


def test_a_killed_saves_leftover_goes_but_a_fresh_one_stays(engine: Engine, settings: Settings,
                                                            tiny_embedder) -> None:  # noqa: ANN001
    builds = Path(settings.index_dir) / "builds"
    old, young = builds / ".tmp-killed", builds / ".tmp-writing"
    for folder in (old, young):
        folder.mkdir()
        (folder / "index.faiss").write_bytes(b"partial")
    hours_ago = time.time() - 2 * 3600
    for path in (old / "index.faiss", old):
        os.utime(path, (hours_ago, hours_ago))
    reopened = open_engine(settings, embedder=tiny_embedder)
    assert not old.exists() and young.is_dir() and reopened.health()["status"] == "ok"
    assert idx.remove_stale_tmp(builds, now=time.time() + 2 * 3600) == [young]  # at a save an hour on: gone too
    assert not young.exists()
