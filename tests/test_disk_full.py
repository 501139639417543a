"""A full disk: writes fail with 503 / exit 2 and a message, and nothing already stored is damaged.

SQLite's max_page_count makes the database file full for real (SQLITE_FULL, "database or disk is full"),
the same error a full file system gives; the CLI case simulates that error at the write call."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from recsys import write_path
from recsys.api import create_app
from recsys.cli import main
from recsys.errors import StorageUnavailable
from recsys.recommend import Filters
from recsys.store import Store

KEY = "k"


def fill_up(store: Store) -> None:
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")


def many(n: int, start: int = 0) -> list[dict]:
    return [{"id": f"n{i}", "title": f"Новина номер {i} про погоду", "text": "х" * 1900, "lang": "uk"}
            for i in range(start, start + n)]


def test_api_write_on_a_full_disk_is_503_and_keeps_what_was_stored(engine, settings) -> None:  # noqa: ANN001
    client = TestClient(create_app(settings.model_copy(update={"api_keys": SecretStr(KEY)}), engine),
                        headers={"X-API-Key": KEY})
    before = client.get("/v1/related/b1").json()["items"]
    count = engine.store.count()
    fill_up(engine.store)
    answer = client.post("/v1/articles", json=many(40))
    assert answer.status_code == 503 and "nothing of this request was stored" in answer.json()["detail"]
    assert answer.headers["retry-after"] == "60"
    assert engine.store.count() == count and engine.store.get("n0") is None
    assert client.get("/v1/related/b1").json()["items"] == before
    assert engine.store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_events_on_a_full_disk_are_503(engine, settings) -> None:  # noqa: ANN001
    client = TestClient(create_app(settings.model_copy(update={"rate_limit_per_s": 0}), engine))
    events = client.app.state.events
    pages = events._db.execute("PRAGMA page_count").fetchone()[0]
    events._db.execute(f"PRAGMA max_page_count = {pages}")
    batch = [{"type": "impression", "origin_id": "b1", "article_ids": ["b2"]}] * 100
    statuses = {client.post("/v1/events", json=batch).status_code for _ in range(3)}
    assert statuses <= {200, 503} and client.get("/v1/related/b1").status_code == 200


def test_cli_ingest_on_a_full_disk_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import json

    monkeypatch.setenv("RECSYS_MODEL", str(tiny_model_path))
    monkeypatch.setenv("RECSYS_DB_PATH", str(tmp_path / "cli.db"))
    monkeypatch.setenv("RECSYS_INDEX_DIR", str(tmp_path / "idx"))
    rows = tmp_path / "a.jsonl"
    rows.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in many(3)) + "\n", encoding="utf-8")
    assert main(["ingest", str(rows), "--quiet"]) == 0
    written = write_path._write_article

    def full(db: sqlite3.Connection, *args: object) -> None:  # the second row hits a full disk, inside the transaction
        if db.execute("SELECT COUNT(*) FROM articles").fetchone()[0] > 3:
            raise sqlite3.OperationalError("database or disk is full")
        written(db, *args)

    rows.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in many(3, start=10)) + "\n", encoding="utf-8")
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(write_path, "_write_article", full)
        code = main(["ingest", str(rows), "--quiet"])
    assert code == 2 and "nothing of this request was stored" in capsys.readouterr().err
    assert Store(tmp_path / "cli.db").count() == 3


def test_unwritable_is_storage_unavailable_and_other_sqlite_errors_are_not(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    from recsys.store import writing

    with pytest.raises(StorageUnavailable):
        with writing(store.path):
            raise sqlite3.OperationalError("attempt to write a readonly database")
    with pytest.raises(sqlite3.OperationalError):
        with writing(store.path):
            raise sqlite3.OperationalError("no such table: nope")


def test_a_build_on_a_full_disk_keeps_the_previous_one(engine, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from recsys import index as idx

    before = (engine.settings.index_dir / "current").read_text()
    served = engine.live.manifest.build_id
    real_save = idx.sparse.save_npz

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(idx.sparse, "save_npz", full)
    with pytest.raises(StorageUnavailable, match="previous build is kept"):
        engine.build()
    monkeypatch.setattr(idx.sparse, "save_npz", real_save)
    assert (engine.settings.index_dir / "current").read_text() == before and engine.live.manifest.build_id == served
    assert not list((engine.settings.index_dir / "builds").glob(".tmp-*"))
    assert engine.related_to_article("b1", Filters(limit=3)).items
