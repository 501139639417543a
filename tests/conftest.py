"""Shared fixtures: a tiny sentence-transformers model built, saved and loaded for real."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recsys.article import Article
from recsys.settings import Settings

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Small hand-made corpus: five stories, each in several languages and outlets.
# Words are shared within a story and rare across stories, so a bag-of-words model ranks them.
STORY_ROWS = [
    # story A: Lviv tram line (uk, en original + uk translation, ru)
    ("a1", "en", "Lviv opens new tram line to Sykhiv district", "The city of Lviv opened a tram line to Sykhiv with twelve stops", "2026-10-01T09:00:00+03:00", "Atlantic Ledger", "society", None),
    ("a2", "uk", "Львів відкрив нову трамвайну лінію на Сихів", "Місто Львів відкрило трамвайну лінію на Сихів з дванадцятьма зупинками", "2026-10-01T12:00:00+03:00", "Вечірній Львів", "society", "a1"),
    ("a3", "uk", "Трамвай на Сихів: Львів запустив лінію", "Трамвайна лінія Львів Сихів запрацювала, дванадцять зупинок", "2026-10-02T08:00:00+03:00", "Київський вісник", "society", None),
    ("a4", "ru", "Львов открыл трамвайную линию на Сихов", "Город Львов открыл трамвайную линию на Сихов, двенадцать остановок", "2026-10-01T15:00:00+03:00", "Рижский курьер", "society", None),
    # story B: Dnipro flood
    ("b1", "uk", "Повінь у Дніпрі: затоплено набережну", "Злива затопила набережну Дніпра, рятувальники відкачують воду", "2026-10-05T10:00:00+03:00", "Дніпровська правда", "environment", None),
    ("b2", "uk", "Рятувальники відкачують воду з набережної Дніпра після зливи", "Набережна Дніпра затоплена після зливи, рятувальники працюють", "2026-10-05T14:00:00+03:00", "Голос Харкова", "environment", None),
    ("b3", "en", "Flood hits Dnipro embankment after heavy rain", "Heavy rain flooded the Dnipro embankment and rescuers pump water", "2026-10-05T11:00:00+03:00", "Northern Chronicle", "environment", None),
    ("b4", "ru", "Ливень затопил набережную Днепра", "Спасатели откачивают воду с набережной Днепра после ливня", "2026-10-05T16:00:00+03:00", "Балтийское обозрение", "environment", None),
    # story C: biathlon win
    ("c1", "uk", "Біатлоністка Марченко виграла спринт в Естерсунді", "Марченко виграла спринт біатлон Естерсунд, перша перемога сезону", "2026-11-20T18:00:00+01:00", "Новини Поділля", "sport", None),
    ("c2", "en", "Marchenko wins biathlon sprint in Ostersund", "Marchenko won the biathlon sprint in Ostersund, first win of the season", "2026-11-20T17:00:00+01:00", "Capital Dispatch", "sport", None),
    ("c3", "uk", "Марченко перемогла у спринті: біатлон, Естерсунд", "Перша перемога сезону: Марченко, спринт, біатлон Естерсунд", "2026-11-21T09:00:00+02:00", "Київський вісник", "sport", "c2"),
    # story D: central bank rate
    ("d1", "uk", "Нацбанк знизив облікову ставку до 12 відсотків", "Національний банк знизив облікову ставку до дванадцяти відсотків через інфляцію", "2026-10-23T14:00:00+03:00", "Київський вісник", "economy", None),
    ("d2", "uk", "Облікова ставка Нацбанку: зниження до 12%", "Нацбанк облікова ставка знижена, інфляція сповільнилась", "2026-10-23T15:00:00+03:00", "Дніпровська правда", "economy", None),
    ("d3", "en", "Ukraine central bank cuts key rate to 12 percent", "The central bank cut the key rate to twelve percent as inflation slowed", "2026-10-23T13:00:00+03:00", "Atlantic Ledger", "economy", None),
    # story E: Kharkiv startup
    ("e1", "uk", "Харківський стартап залучив інвестиції на дрони-доставки", "Стартап з Харкова залучив інвестиції на дрони для доставки ліків", "2026-11-02T10:00:00+02:00", "Голос Харкова", "tech", None),
    ("e2", "en", "Kharkiv startup raises funding for delivery drones", "A Kharkiv startup raised funding for drones delivering medicine", "2026-11-02T09:00:00+02:00", "The Harbour Post", "tech", None),
    ("e3", "uk", "Дрони-доставки ліків: харківський стартап отримав інвестиції", "Інвестиції в харківський стартап, дрони доставки ліків", "2026-11-03T10:00:00+02:00", "Вечірній Львів", "tech", "e2"),
]

STORY_OF = {row[0]: row[0][0] for row in STORY_ROWS}


def story_articles() -> list[Article]:
    """The hand-made corpus as Article objects (translations carry provenance)."""
    by_id = {r[0]: r for r in STORY_ROWS}
    out = []
    for ident, lang, title, text, published, source, section, original in STORY_ROWS:
        extra = {}
        if original:
            orig = by_id[original]
            extra = {"original_url": f"https://news.example/{orig[0]}", "original_lang": orig[1], "original_source": orig[5]}
        out.append(Article(id=ident, url=f"https://news.example/{ident}", title=title, text=text, lang=lang,
                           published_at=published, source=source, section=section, **extra))
    return out


def _sample_texts() -> list[str]:
    path = Path(__file__).resolve().parents[1] / "recsys" / "data" / "sample_articles.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [f"{r['title']} {r['text']}" for r in rows]


def build_tiny_model(folder: Path, dim: int = 96, seed: int = 0) -> Path:
    """A word-level StaticEmbedding model over the test vocabulary, saved to `folder`."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import StaticEmbedding
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    texts = [f"{r[2]} {r[3]}" for r in STORY_ROWS] + _sample_texts()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]"]))
    weights = np.random.default_rng(seed).standard_normal((tokenizer.get_vocab_size(), dim)).astype(np.float32)
    vocab = tokenizer.get_vocab()
    for token, row in vocab.items():
        if not any(ch.isalnum() for ch in token):  # punctuation carries no topic
            weights[row] = 0.0
    model = SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device="cpu")
    model.save(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture()
def settings(tmp_path: Path, tiny_model_path: Path) -> Settings:
    return Settings(model=str(tiny_model_path), db_path=tmp_path / "recsys.db", index_dir=tmp_path / "index",
                    recency_weight=0.0, materialize=False)


@pytest.fixture(scope="session")
def tiny_embedder(tiny_model_path: Path):  # noqa: ANN201
    from recsys.embed import load_embedder

    return load_embedder(Settings(model=str(tiny_model_path)))


@pytest.fixture()
def engine(settings: Settings, tiny_embedder):  # noqa: ANN001, ANN201
    from recsys.engine import open_engine

    eng = open_engine(settings, embedder=tiny_embedder)
    eng.upsert(story_articles())
    yield eng
    eng.store.close()
