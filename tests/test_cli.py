"""The `recsys` command: exit codes, messages, and the same data the API sees."""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.cli import main, sample_corpus


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_path: Path) -> Path:
    monkeypatch.setenv("RECSYS_MODEL", str(tiny_model_path))
    monkeypatch.setenv("RECSYS_DB_PATH", str(tmp_path / "cli.db"))
    monkeypatch.setenv("RECSYS_INDEX_DIR", str(tmp_path / "idx"))
    return tmp_path


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


ROWS = [
    {"id": "k1", "title": "Марченко виграла спринт біатлон", "lang": "uk", "source": "Вісник"},
    {"id": "k2", "title": "Біатлон: Марченко перемогла у спринті", "lang": "uk", "source": "Правда"},
    {"id": "k3", "title": "Нацбанк знизив облікову ставку", "lang": "uk"},
]


def test_ingest_related_delete_info(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(write(env / "a.jsonl", ROWS)), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["stored"] == 3
    assert main(["related", "k1", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["items"][0]["id"] == "k2"
    assert main(["delete", "k2"]) == 0
    capsys.readouterr()
    assert main(["related", "k1", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["items"][0]["id"] == "k3"
    assert main(["info"]) == 0
    assert json.loads(capsys.readouterr().out)["articles"] == 2


def test_bad_rows_are_reported_good_rows_kept_exit_2(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = env / "mixed.jsonl"
    path.write_text(json.dumps(ROWS[0], ensure_ascii=False) + "\n{broken\n" + json.dumps({"id": "q"}) + "\n")
    assert main(["ingest", str(path), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert f"{path}:2: not valid JSON" in captured.err and f"{path}:3: title" in captured.err
    assert json.loads(captured.out)["stored"] == 1
    assert main(["related", "k1"]) == 0


def test_build_writes_manifest_and_user_errors_exit_2(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["ingest", str(write(env / "a.jsonl", ROWS)), "--quiet"])
    capsys.readouterr()
    assert main(["build", "--quiet"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["count"] == 3 and (env / "idx" / "builds" / manifest["build_id"] / "manifest.json").exists()
    assert main(["related", "nope"]) == 2
    assert "no article with id 'nope'" in capsys.readouterr().err
    assert main(["related", "k1", "--limit", "0"]) == 2
    assert main(["ingest", str(env / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_unloadable_model_names_the_setting(env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECSYS_MODEL", str(env / "no-such-model"))
    assert main(["build"]) == 2
    assert "RECSYS_MODEL" in capsys.readouterr().err
    monkeypatch.setenv("RECSYS_MAX_LIMIT", "lots")
    assert main(["info"]) == 2
    assert "RECSYS_" in capsys.readouterr().err


def test_bundled_sample_corpus_is_valid_and_rich_enough() -> None:
    from recsys.ingest import read_articles

    articles, errors = read_articles(sample_corpus())
    assert errors == [] and len(articles) >= 150
    langs = [a.lang for a in articles]
    assert langs.count("uk") > len(articles) / 2 and {"en", "ru"} <= set(langs)
    translated = [a for a in articles if a.original_url]
    urls = {a.url for a in articles}
    assert len(translated) >= 10 and all(a.original_url in urls for a in translated if a.original_lang == "en")
    days = {a.published_at.date() for a in articles}
    assert (max(days) - min(days)).days >= 21


def test_console_script_is_installed() -> None:
    exe = shutil.which("recsys") or str(Path(sys.executable).parent / "recsys")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "ingest" in result.stdout and "serve" in result.stdout
    bad = subprocess.run([exe, "frobnicate"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_read_only_commands_write_nothing(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 2  # no database yet: an error, not an empty database created here
    assert "no database there" in capsys.readouterr().err
    assert not (env / "cli.db").exists() and not (env / "idx").exists()
    main(["ingest", str(write(env / "a.jsonl", ROWS)), "--quiet"])
    shutil.rmtree(env / "idx")  # no build on disk: info and related build one in memory only
    gc.collect()  # the ingest's own connection closes (and checkpoints) before the snapshot
    before = (env / "cli.db").read_bytes()  # (a WAL reader may create SQLite's -shm/-wal side files: no data)
    assert main(["info"]) == 0 and main(["related", "k1", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n}\n", 1)[1])["items"][0]["id"] == "k2"
    assert not (env / "idx").exists()
    gc.collect()
    assert (env / "cli.db").read_bytes() == before


def test_database_in_a_missing_folder_is_exit_2(env: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECSYS_DB_PATH", str(env / "typo" / "cli.db"))
    assert main(["ingest", str(write(env / "a.jsonl", ROWS)), "--quiet"]) == 2
    assert "folder" in capsys.readouterr().err and not (env / "typo").exists()


def test_bad_setting_is_one_line_naming_the_variable(env: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECSYS_MAX_LIMIT", "lots")
    assert main(["info"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: bad setting RECSYS_MAX_LIMIT='lots'") and "integer" in err


def test_unknown_setting_is_a_warning_naming_the_closest(env: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from recsys.settings import unknown_variables

    assert unknown_variables({"RECSYS_DB_PAHT": "x", "RECSYS_MODEL": "m", "RECSYS_BENCH_BODY": "b", "HOME": "/"}) == [
        "RECSYS_DB_PAHT is not a recsys setting and is ignored; did you mean RECSYS_DB_PATH?"]
    monkeypatch.setenv("RECSYS_RATE_LIMIT_PER_SEC", "5")
    main(["ingest", str(write(env / "a.jsonl", ROWS)), "--quiet"])
    assert "did you mean RECSYS_RATE_LIMIT_PER_S?" in caplog.text


def test_demo_uses_its_own_database_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.cli import DEMO_DIR, demo_settings
    from recsys.settings import Settings

    monkeypatch.delenv("RECSYS_DB_PATH", raising=False)
    monkeypatch.delenv("RECSYS_INDEX_DIR", raising=False)
    own = demo_settings(Settings())
    assert (own.db_path, own.index_dir, own.demo) == (DEMO_DIR / "demo.db", DEMO_DIR, True)
    monkeypatch.setenv("RECSYS_DB_PATH", str(tmp_path / "site.db"))
    told = demo_settings(Settings())
    assert (told.db_path, told.index_dir) == (tmp_path / "site.db", DEMO_DIR)
    assert Settings().demo is False


def test_read_only_commands_skip_a_broken_build_without_moving_it(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["ingest", str(write(env / "a.jsonl", ROWS)), "--quiet"])
    main(["build"])  # a build that holds the vectors (ingest's first build was made before them)
    build = env / "idx" / "builds" / (env / "idx" / "current").read_text().strip()
    (build / "index.faiss").write_bytes((build / "index.faiss").read_bytes()[:100])  # truncated
    gc.collect()
    capsys.readouterr()
    assert main(["info"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "degraded"
    assert build.is_dir() and not list((env / "idx" / "builds").glob(".broken-*"))
