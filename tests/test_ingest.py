"""Reading JSON lines and CSV: good rows kept, bad rows reported with line numbers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from recsys.errors import InvalidInput
from recsys.ingest import detect_lang, parse_article, read_articles


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return path


def test_jsonl_good_and_bad_rows_with_line_numbers(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"id": 1, "title": "Київ готується до зими", "text": "Міська рада ухвалила план.", "published_at": "2026-10-02"},
        "{not json",
        {"id": "x2", "lang": "en"},
        {"id": "x3", "title": "Ok", "lang": "english"},
        {"id": "x4", "title": "Timing", "lang": "en", "published_at": "yesterday"},
        {"id": "x5", "title": "Fine", "lang": "EN", "tags": "a; b", "extra": "ignored"},
    ])
    articles, errors = read_articles(path)
    assert [a.id for a in articles] == ["1", "x5"]
    assert articles[0].lang == "uk" and articles[0].published_at.isoformat() == "2026-10-02T00:00:00+00:00"
    assert articles[1].lang == "en" and articles[1].tags == ["a", "b"]
    assert [e.line for e in errors] == [2, 3, 4, 5]
    assert "JSON" in errors[0].reason and "title" in errors[1].reason
    assert "lang" in errors[2].reason and "published_at" in errors[3].reason


def test_csv_and_gzip(tmp_path: Path) -> None:
    csv_path = tmp_path / "a.csv"
    csv_path.write_text(
        "id,title,text,lang,published_at,source,tags\n"
        "c1,Headline one,Lead one,en,2026-10-01T10:00:00+02:00,Ledger,\"x,y\"\n"
        "c2,,,en,,Ledger,\n",
        encoding="utf-8",
    )
    articles, errors = read_articles(csv_path)
    assert [a.id for a in articles] == ["c1"] and articles[0].tags == ["x", "y"]
    assert [e.line for e in errors] == [3]
    gz = tmp_path / "b.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "g", "title": "Газета", "lang": "ru"}) + "\n")
    assert [a.id for a in read_articles(gz)[0]] == ["g"]


def test_unknown_format_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text("<x/>")
    with pytest.raises(InvalidInput, match="unknown format"):
        read_articles(tmp_path / "a.xml")
    with pytest.raises(InvalidInput, match="no such file"):
        read_articles(tmp_path / "missing.jsonl")


def test_language_detection_tells_ukrainian_from_russian() -> None:
    assert detect_lang("Уряд ухвалив нові правила для їжі та житла") == "uk"
    assert detect_lang("Правительство объявило новые правила, всё изменится") == "ru"
    assert detect_lang("The government announced new rules for housing") == "en"
    assert detect_lang("Die Regierung hat neue Regeln für Wohnungen beschlossen") == "de"
    assert parse_article({"id": "d", "title": "Zmiany w przepisach dotyczących mieszkań w Polsce"}).lang == "pl"


def test_missing_title_comes_from_the_first_sentence() -> None:
    art = parse_article({"id": "t", "lang": "en", "text": "The EU said it would act. More details follow."})
    assert art.title == "The EU said it would act." and art.text.startswith("The EU")
    long = parse_article({"id": "u", "lang": "en", "text": "word " * 100})
    assert len(long.title) <= 141 and long.title.endswith("…")


def test_naive_time_is_taken_as_utc() -> None:
    art = parse_article({"id": "t", "title": "x", "lang": "en", "published_at": "2026-10-01T10:00:00"})
    assert art.published_at.isoformat() == "2026-10-01T10:00:00+00:00"


@pytest.mark.skipif(not (SHARED_DATA / "tgcontest_toloka_pairs").exists(), reason="../shared/data not present")
def test_shared_data_format_is_accepted_as_it_is() -> None:
    articles, errors = read_articles(SHARED_DATA / "tgcontest_toloka_pairs" / "articles.jsonl.gz")
    assert errors == [] and len(articles) == 139
    assert {a.lang for a in articles} <= {"ru", "en"}
    for name in ("semeval2022_task8_subset", "ruwa_events_en", "paraphraser_ru"):  # some rows have no title
        articles, errors = read_articles(SHARED_DATA / name / "articles.jsonl.gz")
        assert errors == [] and all(a.title for a in articles), name
