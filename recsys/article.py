"""What recsys stores and shows of a news article: the validated `Article` a publisher sends, and
the `Headline` a related block shows of it."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timezone

from pydantic import BaseModel, ConfigDict, Field, field_validator

def fold(text: str) -> str:
    """Text with case, punctuation and Unicode forms ignored: how two headlines are compared as one."""
    return re.sub(r"\W+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


# An id is one path segment of the routes that read it (/v1/related/{id}): a decoded "/" splits it
# (an article stored as "a/b" was unreachable on every route), "\\" is a "/" to browsers, "?" and
# "#" end the path of a hand-built link, control characters do not belong in a URL, and clients
# drop "." and ".." segments. Checked on writes only, so rows stored before still read.
URL_BREAKING = re.compile(r"[/\\?#\x00-\x1f\x7f-\x9f]")


def id_problem(article_id: str) -> str | None:
    """Why an article id cannot be written (it must work as one URL path segment), or None."""
    found = URL_BREAKING.search(article_id)
    if found:
        return (f"must not contain {found.group()!r}: an id is one segment of URLs such as /v1/related/{{id}}, "
                "so /, \\, ?, # and control characters are refused")
    if article_id in (".", ".."):
        return "must not be '.' or '..': URLs drop such segments"
    return None


FIELDS = (
    "id", "url", "title", "text", "lang", "published_at", "source", "section", "tags",
    "image_url", "original_url", "original_lang", "original_source",
)


class Article(BaseModel):
    """One news article as the publisher describes it."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=512)
    url: str | None = None
    title: str = Field(min_length=1, max_length=2000)
    text: str = ""
    lang: str = Field(pattern=r"^[a-z]{2}$")
    published_at: datetime | None = None
    source: str | None = None
    section: str | None = None
    tags: list[str] = Field(default_factory=list)
    image_url: str | None = None
    original_url: str | None = None
    original_lang: str | None = Field(default=None, pattern=r"^[a-z]{2}$")
    original_source: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value  # true is no id

    @field_validator("published_at", mode="before")
    @classmethod
    def _dates_are_midnight(cls, value: object) -> object:
        if isinstance(value, str) and len(value) == 10:
            value = date.fromisoformat(value)
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
        return value

    @field_validator("published_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # Naive times are taken as UTC: feeds often drop the offset, refusing them loses data.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value

    @property
    def published_ts(self) -> float | None:
        return self.published_at.timestamp() if self.published_at else None


@dataclass(frozen=True, slots=True)
class Headline:
    """What a related block shows of a stored article (the fields of the answer's items)."""

    id: str
    url: str | None
    title: str
    source: str | None
    lang: str
    published_at: datetime | None
    section: str | None
    image_url: str | None
    original_source: str | None
