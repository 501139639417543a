"""Character n-gram TF-IDF: checked against scikit-learn's exact (unhashed) TfidfVectorizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from recsys.lexical import LexicalStats, dot_rows, fit_rows, gram, gram_at, similarities, take_rows

DOCS = [
    "Львів відкрив нову трамвайну лінію на Сихів",
    "Трамвай на Сихів: Львів запустив лінію",
    "Нацбанк знизив облікову ставку до 12 відсотків",
    "Lviv opens new tram line to Sykhiv district",
]


def test_matches_exact_tfidf_cosines() -> None:
    stats = LexicalStats()
    stats.add(DOCS)
    to_query = similarities(DOCS[0], DOCS[1:], stats.idf)
    exact = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True).fit_transform(DOCS)
    expected = (exact @ exact.T).toarray()
    np.testing.assert_allclose(to_query, expected[0, 1:], atol=1e-4)
    assert to_query[0] > 0.2 > to_query[1]  # same story beats another story in the same language
    fitted, rows = fit_rows(DOCS)  # one hashing pass: the same counts, and rows weighed by them
    assert np.array_equal(fitted.df, stats.df) and fitted.n_docs == 4
    np.testing.assert_allclose(gram(rows), expected, atol=1e-4)
    np.testing.assert_allclose(gram(rows[[2, 0]]), expected[np.ix_([2, 0], [2, 0])], atol=1e-4)
    mask = np.zeros((4, 4), dtype=bool)
    mask[1, 3] = mask[3, 1] = True  # only rows 1 and 3 are compared
    np.testing.assert_allclose(gram_at(rows, mask), np.where(mask, expected, 0.0), atol=1e-4)
    assert not gram_at(rows, np.zeros((4, 4), dtype=bool)).any()


def test_counts_grow_incrementally_and_survive_saving(tmp_path: Path) -> None:
    once, twice = LexicalStats(), LexicalStats()
    once.add(DOCS)
    twice.add(DOCS[:2])
    twice.add(DOCS[2:])
    assert twice.n_docs == 4 and np.array_equal(once.df, twice.df)
    once.save(tmp_path / "lex.npz")
    loaded = LexicalStats.load(tmp_path / "lex.npz")
    assert loaded.n_docs == 4 and np.array_equal(loaded.idf, once.idf)
    # idf = log((1 + n) / (1 + df)) + 1, the same values scikit-learn computes without hashing
    exact = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).fit(DOCS)
    assert {round(float(x), 4) for x in loaded.idf[loaded.df > 0]} == {round(float(x), 4) for x in exact.idf_}
    assert loaded.idf.max() == pytest.approx(np.log(5 / 1) + 1)  # n-grams never seen


def test_dot_rows_matches_sparse_products_and_leaves_no_trace() -> None:
    _, rows = fit_rows([*DOCS, ""])  # the last row is empty
    query = rows[[1]]
    picked = take_rows(rows, np.array([4, 1, 0, 1, 3]))
    expected = (rows[[4, 1, 0, 1, 3]] @ query.T).toarray().ravel()
    np.testing.assert_allclose(dot_rows(picked, query), expected, atol=1e-6)
    assert dot_rows(picked, query)[1] == pytest.approx(1.0, abs=1e-5) and dot_rows(picked, query)[0] == 0.0
    np.testing.assert_allclose(dot_rows(picked, rows[[2]]), (rows[[4, 1, 0, 1, 3]] @ rows[[2]].T).toarray().ravel(),
                               atol=1e-6)  # the first query's entries were cleared
