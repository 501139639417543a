"""The SQLite store: WAL, idempotent upserts, vids that change with the text, deletes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.article import Article
from recsys.errors import ConfigError, StorageUnavailable
from recsys.store import Store


def art(ident: str = "x1", title: str = "Заголовок", **kw: object) -> Article:
    return Article(id=ident, title=title, lang="uk", url=f"https://s.example/{ident}", **kw)


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(4).astype(np.float32)
    return v / np.linalg.norm(v)


def test_real_database_file_in_wal_mode(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    assert (tmp_path / "db.sqlite").exists()
    assert store._query("PRAGMA journal_mode")[0][0] == "wal"


def test_missing_folder_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Store(tmp_path / "typo" / "db.sqlite")
    assert not (tmp_path / "typo").exists()


def test_read_only_store_reads_and_refuses_writes_and_needs_a_database(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no database there"):
        Store(tmp_path / "none.db", read_only=True)
    assert not (tmp_path / "none.db").exists()
    Store(tmp_path / "db.sqlite").upsert([(art(), "h", vec(1), None)], "m")
    before = (tmp_path / "db.sqlite").stat().st_mtime_ns
    reader = Store(tmp_path / "db.sqlite", read_only=True)
    assert reader.get("x1") is not None
    with pytest.raises(StorageUnavailable, match="readonly"):
        reader.upsert([(art(), "h2", vec(2), None)], "m")
    assert (tmp_path / "db.sqlite").stat().st_mtime_ns == before


def test_upsert_roundtrip_and_idempotence(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    a = art(tags=["a", "b"], published_at="2026-10-01T09:00:00+03:00", source="Вісник", original_url="https://o.example/1", original_lang="en")
    store.upsert([(a, "h1", vec(1), vec(2))], "m")
    store.upsert([(a, "h1", None, None)], "m")
    assert store.count() == 1
    got = store.get("x1")
    assert got == a and got.published_at.utcoffset().total_seconds() == 3 * 3600
    assert store.get_by_url("https://s.example/x1") == a
    assert store.fingerprints(["x1", "nope"]) == {"x1": ("h1", "m")}
    store.upsert([(art("x2"), "h2", vec(3), None)], "m")  # a vector without its headline vector: not complete
    assert store.fingerprints(["x2"]) == {"x2": ("h2", None)}


def test_new_vector_gets_new_vid_and_old_vid_stops_resolving(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.upsert([(art(), "h1", vec(1), None)], "m")
    first = store.max_vid()
    store.upsert([(art(title="Новий заголовок"), "h2", vec(2), None)], "m")
    second = store.max_vid()
    assert second > first
    assert store.headlines_by_vid([first]) == {} and store.rows_by_vid([first], "m") == {}
    resolved = store.headlines_by_vid([first, second])
    assert list(resolved) == [second] and resolved[second].title == "Новий заголовок"
    assert resolved[second].published_at == art().published_at  # read back without validation, same values
    assert list(store.rows_by_vid([first, second], "m")) == [second] and store.rows_by_vid([second], "x") == {}
    np.testing.assert_allclose(store.vector_of("x1", "m"), vec(2))
    assert store.vector_of("x1", "other-model") is None


def test_delete_removes_article_and_vector(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.upsert([(art("a"), "h", vec(1), None), (art("b"), "h", vec(2), None)], "m")
    vid_a = store.max_vid() - 1
    assert store.delete("a") is True and store.delete("a") is False
    assert store.get("a") is None and store.count() == 1
    assert store.headlines_by_vid([vid_a]) == {}
    assert [len(rows) for rows, _, _ in store.vector_rows("m")] == [1]


def test_vectors_after_vid_and_needing_vectors(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.upsert([(art(f"a{i}"), "h", vec(i), vec(10 + i)) for i in range(5)], "m")
    store.upsert([(art("plain"), "h", None, None)], "m")  # nothing to keep: not stored (see below)
    assert store.get("plain") is None
    store.upsert([(art("plain"), "h", vec(9), None)], "m")
    store._query("UPDATE articles SET vid = NULL WHERE id = 'plain'")  # stored without a vector (an older store)
    chunks = list(store.vector_rows("m", after_vid=2, batch=2))
    assert [[r["vid"] for r in rows] for rows, _, _ in chunks] == [[3, 4], [5]]
    assert [r["id"] for r in chunks[0][0]] == ["a2", "a3"]
    assert chunks[0][1].shape == (2, 4) and chunks[0][1].dtype == np.float32
    assert np.array_equal(chunks[0][2], np.stack([vec(12), vec(13)]))  # headline vectors ride along
    assert store.ids_needing_vectors("m") == ["plain"]
    assert store.ids_needing_vectors("other") == ["a0", "a1", "a2", "a3", "a4", "plain"]


def test_a_vector_without_its_headline_vector_is_made_again(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.upsert([(art("old"), "h", vec(1), None), (art("new"), "h", vec(2), vec(3))], "m")
    assert store.ids_needing_vectors("m") == ["old"]
    (_, vectors, headlines), = store.vector_rows("m")
    assert np.array_equal(headlines, np.stack([np.zeros(4, np.float32), vec(3)]))  # none stored: zeros


def test_a_store_from_before_headline_vectors_opens_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "db.sqlite")
    db.executescript("CREATE TABLE vectors (vid INTEGER PRIMARY KEY AUTOINCREMENT, article_id TEXT NOT NULL, "
                     "model TEXT NOT NULL, vector BLOB NOT NULL);"
                     "INSERT INTO vectors (article_id, model, vector) VALUES ('gone', 'm', x'00000000');")
    db.commit()
    db.close()
    store = Store(tmp_path / "db.sqlite")
    store.upsert([(art("a"), "h", vec(1), vec(2))], "m")
    assert store.ids_needing_vectors("m") == []
    assert store.max_vid() == 2  # the old row is still there, so no vid is reused


def test_data_survives_reopen(tmp_path: Path) -> None:
    Store(tmp_path / "db.sqlite").upsert([(art(), "h", vec(1), None)], "m")
    assert Store(tmp_path / "db.sqlite").get("x1") is not None


def test_a_row_without_a_vector_keeps_the_stored_one_only_if_it_is_its_texts(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.upsert([(art("a"), "h1", vec(1), vec(2)), (art("b"), "h1", vec(3), None)], "m")
    vid = store.current_vids(["a"])["a"]
    outcome = store.upsert([(art("a", section="x"), "h1", None, None), (art("a2"), "h1", None, None),
                            (art("b"), "h1", None, None)], "m")
    assert outcome.updated == ["a"] and store.get("a").section == "x" and store.current_vids(["a"]) == {"a": vid}
    assert outcome.missed == ["a2", "b"]  # nothing stored to keep; no headline vector to keep
    assert store.upsert([(art("a", title="Інший"), "h2", None, None)], "m").missed == ["a"]  # another text
    assert store.get("a").section == "x" and store.vector_of("a", "m") is not None  # left as it was
    assert store.upsert([(art("a"), "h1", None, None)], "other-model").missed == ["a"]


def test_a_delete_wins_over_writes_that_began_before_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.upsert([(art("a"), "h", vec(1), vec(2)), (art("b"), "h", vec(3), vec(4))], "m")
    before = store.deletion_mark()
    assert store.delete("a") and store.delete("b") and not store.delete("never")
    after, gone = store.deleted_after(before)
    assert gone == ["a", "b"] and after > before and store.marks() == (store.max_vid(), after)
    late = store.upsert([(art("a"), "h", vec(1), vec(2))], "m", since=before)  # began before the delete
    assert late.dropped == ["a"] and store.get("a") is None
    again = store.upsert([(art("b"), "h", vec(3), vec(4))], "m", since=after)  # began after it
    assert again.inserted == ["b"] and store.get("b") is not None and store.deleted_after(before)[1] == ["a"]
    assert store.delete("b") and store.deleted_after(after)[1] == ["b"]  # a fresh number for a second delete
