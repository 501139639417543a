"""`recsys measure` building blocks, on hand-made vectors."""

from __future__ import annotations

import numpy as np
import pytest

from recsys import lexical, measure


def test_top1_by_hand() -> None:
    src = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    tgt = np.array([[0.9, 0.1], [0.8, 0.6], [0.0, 1.0]])
    # dot products: row0 -> [0.9, 0.8, 0.0] picks 0 (its own); row1 -> [0.1, 0.6, 1.0] picks 2;
    # row2 -> [0.62, 0.96, 0.8] picks 1. One of three finds its own pair.
    assert measure.top1(src, tgt) == pytest.approx(1 / 3)


def test_hybrid_rows_dot_to_the_service_blend() -> None:
    texts = ["Нацбанк знизив ставку", "Нацбанк знизив облікову ставку", "Трамвай у Львові"]
    dense_vectors = np.eye(3, 4, dtype=np.float32)
    dense_vectors[1] = [0.6, 0.8, 0.0, 0.0]

    def dense(batch):  # noqa: ANN001, ANN202
        return dense_vectors[[texts.index(t) for t in batch]]

    rows = measure.hybrid_encoder(dense, weight=0.5)(texts)
    lex = lexical.vectors(texts, _idf(texts))
    expected = (0.6 + 0.5 * float((lex[0] @ lex[1].T).toarray()[0, 0])) / 1.5
    assert float((rows[0] @ rows[1].T).toarray()[0, 0]) == pytest.approx(expected, abs=1e-5)


def _idf(texts: list[str]) -> np.ndarray:
    stats = lexical.LexicalStats()
    stats.add(texts)
    return stats.idf


def test_crosslingual_uses_each_direction() -> None:
    heldout = [("cat", "кіт", "uk"), ("dog", "пес", "uk"), ("sun", "солнце", "ru")]
    vocab = {"cat": 0, "кіт": 0, "dog": 1, "пес": 2, "sun": 3, "солнце": 3}

    def encode(batch):  # noqa: ANN001, ANN202
        return np.eye(4)[[vocab[t] for t in batch]]

    # uk: cat/кіт share a vector, dog/пес do not (ties go to the first index: пес -> cat)
    assert measure.crosslingual(encode, heldout) == {"ru->en": 1.0, "uk->en": 0.5, "en->uk": 0.5}


def test_more_models_get_a_column_and_a_speed_each(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import recsys.distill

    pairs = [("Rate kept", "Ставку збережено", "uk"), ("Tram opens", "Трамвай відкрито", "uk")]
    monkeypatch.setattr(recsys.distill, "load_pairs", lambda *a, **k: ([], pairs))
    # each model's encoder marks its vectors, so every column must come from its own model
    monkeypatch.setattr(measure, "dense_encoder", lambda name: (lambda texts: np.full((len(texts), 2), len(name))))
    monkeypatch.setattr(measure, "crosslingual", lambda encode, heldout: {"uk->en": float(encode(["x"])[0, 0])})
    monkeypatch.setattr(measure, "sts", lambda encode, data: {})
    monkeypatch.setattr(measure, "paraphrase_retrieval", lambda encode, data: {})
    report = measure.run(tmp_path, "s", "tt", 1, 0.5, others=["mmm", "s", "uuuu"])
    assert report["others"] == ["mmm", "uuuu"]  # the student named again is not measured twice
    assert {name: report["results"][name]["uk->en"] for name in ("student", "teacher", "mmm", "uuuu")} == {
        "student": 1.0, "teacher": 2.0, "mmm": 3.0, "uuuu": 4.0}
    assert set(report["sentences_per_s"]) == {"student", "teacher", "mmm", "uuuu"}
    page = measure.markdown(report)
    assert "| task | student | teacher | mmm | uuuu | tfidf |" in page
    assert "; mmm " in page and "; uuuu " in page


def test_the_page_names_the_command_that_made_it() -> None:
    import argparse

    from recsys.cli_models import _measure_command

    args = argparse.Namespace(data="D", student=None, teacher="T", also=["A", "B"], out="O")
    assert _measure_command(args) == "recsys measure --data D --teacher T --also A --also B --out O"
    report = {"student": "s", "teacher": "t", "heldout_pairs": 1, "lexical_weight": 0.5, "command": "recsys measure X",
              "results": {"student": {"uk->en": 0.5}, "teacher": {"uk->en": 0.7}},
              "sentences_per_s": {"student": 10.0, "teacher": 1.0}, "student_speedup": 10.0}
    assert "Regenerate with `recsys measure X`." in measure.markdown(report)


def test_backend_report_says_why_fewer_texts_were_timed() -> None:
    from recsys.measure_backends import _reduced

    asked = {"headlines": 2000, "leads": 2000}
    assert _reduced({"headlines": 2000, "leads": 2000, "asked": asked}) == []
    short_data = _reduced({"headlines": 2000, "leads": 1361, "asked": asked})
    assert len(short_data) == 1 and "2,000 leads were asked for; the data has 1,361" in short_data[0]
    reduced = _reduced({"headlines": 1000, "leads": 500, "asked": {"headlines": 1000, "leads": 500}})
    assert "reduced from 2,000 headlines + 2,000 leads to 1,000 + 500" in reduced[0]
