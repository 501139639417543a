"""Ingest stage: read JSON lines or CSV files (optionally gzip'd) into validated articles.

Accepts the shared-data format as it is (`id, title, text, lang, published_at, url, source,
cluster`, extra keys ignored). A bad row is reported with its line number and reason; the
good rows are still returned.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from recsys import safe_json
from recsys.article import Article, id_problem
from recsys.errors import InvalidInput, PayloadTooLarge

CYRILLIC_UK = set("іїєґІЇЄҐ")
CYRILLIC_RU = set("ыэъёЫЭЪЁ")


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


def detect_lang(text: str) -> str:
    """ISO 639-1 code of the text; Ukrainian and Russian told apart by their own letters first."""
    letters = set(text)
    has_uk, has_ru = bool(letters & CYRILLIC_UK), bool(letters & CYRILLIC_RU)
    if has_uk != has_ru:
        return "uk" if has_uk else "ru"
    import py3langid

    # The model knows 140 languages, some by a three-letter code only (pcm, yue), which an article's
    # `lang` refuses: the likeliest two-letter one is taken (rank sorts them, best first).
    return next(str(code) for code, _ in py3langid.rank(text) if len(code) == 2)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "row"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def headline_from(text: str, max_chars: int = 140) -> str:
    """A stand-in headline for rows that have only a body: its first sentence, cut at a word."""
    first = re.split(r"(?<=[.!?…])\s", text.strip(), maxsplit=1)[0]
    if len(first) <= max_chars:
        return first
    return first[:max_chars].rsplit(" ", 1)[0] + "…"


def parse_article(raw: Mapping[str, Any]) -> Article:
    """Validate one raw row; a missing `lang` is detected, a missing title taken from the text."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("expected a JSON object")
    data = {k: v for k, v in raw.items() if v is not None and v != ""}
    if "title" not in data and isinstance(data.get("text"), str) and data["text"].strip():
        data["title"] = headline_from(data["text"])
    if isinstance(data.get("tags"), str):
        data["tags"] = [t.strip() for t in data["tags"].replace(";", ",").split(",") if t.strip()]
    if "lang" not in data:
        sample = f"{data.get('title', '')} {data.get('text', '')}".strip()
        if isinstance(sample, str) and sample:
            data["lang"] = detect_lang(sample)
    elif isinstance(data["lang"], str):
        data["lang"] = data["lang"].strip().lower()
    try:
        article = Article.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(_describe(exc)) from exc
    problem = id_problem(article.id)
    if problem:
        raise InvalidInput(f"id: {problem}")
    return article


def batch_rows(body: Any, key: str, max_items: int) -> list[Any]:
    """The rows of a JSON request body: one object, a list of them, or {key: [...]}."""
    rows = body.get(key) if isinstance(body, dict) and key in body else body
    if isinstance(rows, dict):
        rows = [rows]
    noun = key.removesuffix("s")
    if not isinstance(rows, list) or not rows:
        raise InvalidInput(f'send an {noun} object, a list of them, or {{"{key}": [...]}}')
    if len(rows) > max_items:
        raise PayloadTooLarge(f"{len(rows)} {key} in one request; at most {max_items}")
    return rows


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8", newline="")


def _rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, raw row or exception) for each record in the file."""
    name = path.name.removesuffix(".gz")
    with _open_text(path) as handle:
        if name.endswith(".csv"):
            reader = csv.DictReader(handle)
            for row in reader:
                yield reader.line_num, row
        elif name.endswith((".jsonl", ".ndjson", ".json")):
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield number, safe_json.loads(line)
                    except InvalidInput as exc:  # also NaN, a huge integer, nesting too deep
                        yield number, exc
        else:
            raise InvalidInput(f"{path}: unknown format; use .jsonl, .ndjson or .csv (optionally .gz)")


def sample_corpus() -> Path:
    """The bundled sample corpus (invented news items in uk, en and ru)."""
    return Path(str(resources.files("recsys") / "data" / "sample_articles.jsonl"))


def read_articles(path: Path) -> tuple[list[Article], list[RowError]]:
    """All valid articles of the file (the last row wins for a repeated id) and every bad row."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    articles: dict[str, Article] = {}
    errors: list[RowError] = []
    try:
        for number, raw in _rows(path):
            try:
                if isinstance(raw, Exception):
                    raise raw
                article = parse_article(raw)
            except InvalidInput as exc:
                errors.append(RowError(number, exc.message))
                continue
            articles.pop(article.id, None)
            articles[article.id] = article
    except (UnicodeDecodeError, OSError, csv.Error) as exc:
        raise InvalidInput(f"{path}: cannot read: {exc}") from exc
    return list(articles.values()), errors
