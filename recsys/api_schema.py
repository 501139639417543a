"""The OpenAPI side of the HTTP contract: the error bodies, the answers of routes that build their JSON
by hand, the bodies the API reads itself, and `responses(...)`, which declares on a route every status
it can answer with. tests/test_openapi_contract.py holds the app to this document.

A client generated from /openapi.json must be able to read every answer: so each status a route
really returns is declared, with the `{"detail": ...}` body every error has (request_guard.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from recsys.answers import RelatedResponse
from recsys.settings import Settings
from recsys.wire_types import JSON_INTEGER, JsonBool, JsonNumber

JSON, HTML = "application/json", "text/html"
TEXT = {"schema": {"type": "string"}}
# Not only whitespace: fields are stripped before they are checked. The whitespace is named, as \s
# differs: models strip Unicode White_Space (with \x85, which \s in JSON Schema lacks), and Python's
# str.strip (the draft's check) also \x1c-\x1f.
WHITE_SPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK, NOT_BLANK_PY = f"[^{WHITE_SPACE}]", f"[^{WHITE_SPACE}\\x1c-\\x1f]"


LangPolicy = Literal["same", "prefer", "any"]


class DraftRequest(BaseModel):
    """An unsaved article; a title or a text that is not blank is needed (the anyOf below says so)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["title"], "properties": {"title": {"pattern": NOT_BLANK_PY}}},
        {"required": ["text"], "properties": {"text": {"pattern": NOT_BLANK_PY}}},
    ]})

    title: str = Field(default="", max_length=2000)
    text: str = Field(default="", max_length=100_000)
    lang: str | None = Field(default=None, pattern=r"^[a-z]{2}$", description="detected when left out")
    limit: Annotated[int, Field(ge=1), JSON_INTEGER] | None = None
    lang_policy: LangPolicy = "same"
    max_age_days: JsonNumber | None = Field(default=None, gt=0)
    section: str | None = None
    exclude: list[str] = Field(default_factory=list)
    fill: JsonBool | None = None
    url: str | None = Field(default=None, description="the draft's own URL, so its stored copies are never answered")


class ErrorBody(BaseModel):
    """Every error answer: what went wrong, in words."""

    detail: str


class FieldError(BaseModel):
    """One problem of a request that fails parameter or body validation (FastAPI's shape)."""

    loc: list[str | int] = Field(description="where: query, path, header or body, then the field")
    msg: str
    type: str
    input: Any = Field(default=None, description="the value sent, cut when long (see README, Errors)")
    ctx: dict[str, Any] | None = None


class ValidationErrorBody(BaseModel):
    """A 422: a message, or (when parameters or the draft body fail validation) one entry per problem."""

    detail: str | list[FieldError]


class RowError(BaseModel):
    index: int = Field(description="position of the row in the batch")
    id: Any = Field(description="the row's id as sent (any JSON), null when it had none")
    reason: str


class Upserted(BaseModel):
    """Rows stored, and the bad rows of the batch with their reasons."""

    stored: int
    errors: list[RowError]
    inserted: int
    updated: int
    embedded: int


class UpsertRefused(ValidationErrorBody):
    """A batch with no valid row (422): the reason of each row, and the first one in `detail`."""

    stored: int = 0
    errors: list[RowError] = Field(default_factory=list)


class Deleted(BaseModel):
    deleted: str


class EventsStored(BaseModel):
    stored: int = Field(description="links of known articles counted")
    unknown: int = Field(description="links naming an article (or a page) that is not stored, counted apart")


class PositionCtr(BaseModel):
    position: int
    impressions: int
    clicks: int
    ctr: float | None = Field(description="clicks / impressions; null without impressions")


class CtrReport(BaseModel):
    positions: list[PositionCtr]
    impressions: int
    clicks: int
    unknown: int


class IndexInfo(BaseModel):
    """The live index build's manifest, and how many vectors it holds now."""

    build_id: str
    model: str
    dimension: int
    metric: str
    normalized: bool
    count: int
    index_type: str
    max_vid: int
    created_at: str
    faiss_version: str
    format: int
    live_vectors: int


class Materialized(BaseModel):
    blocks: int = Field(description="default blocks computed ahead of requests")
    pending: int


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    reason: str | None = Field(description="why the status is degraded (a broken index build set aside)")
    model: str
    dimension: int
    articles: int
    index: IndexInfo
    materialized: Materialized


WHEN = {
    304: "not an error: If-None-Match matches the answer's ETag (no body)",
    400: "a body that cannot be parsed: not UTF-8, nested too deeply, an integer over 4,300 digits",
    401: "no X-API-Key, or a key that is not configured",
    403: "writes while RECSYS_API_KEYS is unset, or an event from a page on an origin not allowed",
    404: "unknown id or URL",
    413: "a body over RECSYS_MAX_BODY_BYTES (events: RECSYS_MAX_EVENT_BODY_BYTES), or too many rows",
    414: "path and query over RECSYS_MAX_URL_BYTES",
    422: "bad parameters or body",
    429: "over the client's rate limit",
    503: "the database cannot be written (disk full, read-only): nothing was stored",
}
STRING_HEADER = {"schema": {"type": "string"}, "required": True}
HEADERS = {
    304: {"ETag": STRING_HEADER},
    401: {"WWW-Authenticate": STRING_HEADER},
    429: {"Retry-After": {**STRING_HEADER, "description": "seconds to wait"}},
    503: {"Retry-After": {"schema": {"type": "string"}, "description": "seconds to wait (when a write failed)"}},
}
CACHED = {"ETag": STRING_HEADER, "Cache-Control": STRING_HEADER}


def responses(*codes: int, ok: dict[str, Any] | None = None,
              bodies: dict[int, type[BaseModel]] | None = None) -> dict[int | str, Any]:
    """FastAPI `responses=` for a route: each status in `codes` with its description, headers and JSON
    error body (ErrorBody; 422: ValidationErrorBody; `bodies` overrides); `ok` declares the 200."""
    declared: dict[int | str, Any] = {200: ok} if ok else {}
    for code in codes:
        entry: dict[str, Any] = {"description": WHEN[code]}
        if code in HEADERS:
            entry["headers"] = HEADERS[code]
        if code != 304:
            entry["model"] = (bodies or {}).get(code, ValidationErrorBody if code == 422 else ErrorBody)
        declared[code] = entry
    return declared


def related_ok(media_type: str) -> dict[str, Any]:
    """The 200 of a related block: JSON (RelatedResponse) or an HTML fragment, with its cache headers."""
    if media_type == JSON:
        return {"model": RelatedResponse, "description": "the block", "headers": CACHED}
    return {"description": "the block as HTML", "content": {HTML: TEXT},
            "headers": {**CACHED, "Content-Security-Policy": STRING_HEADER}}


# What the API reads itself (POST /v1/articles and /v1/events parse their bodies row by row):
# declared here so that generated clients, and the contract test, know the shapes.
ID_TEXT = {"type": "string", "minLength": 1, "maxLength": 512, "pattern": NOT_BLANK}
NULLABLE_TEXT = {"type": ["string", "null"]}
ISO_TIME = {"type": ["string", "null"], "format": "date-time"}


def article_body(settings: Settings) -> dict[str, Any]:
    """One article, a list of them, or {"articles": [...]}; rows that fail are answered in `errors`.
    Null or "" is a field left out (feeds often send empty fields)."""
    segment = r"[^/\\?#\x00-\x1f\x7f-\x9f]"  # one URL path segment: no / \ ? # or control characters
    edge = f"[^{WHITE_SPACE}/\\\\?#\\x00-\\x1f\\x7f-\\x9f]"  # ...and no blank ends (ids are stripped)
    article = {
        "type": "object",
        "required": ["id", "title"],
        "properties": {
            "id": {"type": "string", "maxLength": 512, "not": {"enum": [".", ".."]},
                   "pattern": f"^{edge}({segment}*{edge})?$"},
            "title": {"type": "string", "maxLength": 2000, "pattern": NOT_BLANK_PY},  # (language detection)
            "text": NULLABLE_TEXT,
            "lang": {"anyOf": [{"type": "string", "pattern": "^[a-z]{2}$"}, {"enum": ["", None]}],
                     "description": "ISO 639-1; detected when left out"},
            "url": NULLABLE_TEXT, "published_at": ISO_TIME, "source": NULLABLE_TEXT, "section": NULLABLE_TEXT,
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": ["string", "null"]}],
                     "description": "a list, or one comma-separated string"},
            "image_url": NULLABLE_TEXT, "original_url": NULLABLE_TEXT, "original_source": NULLABLE_TEXT,
            "original_lang": {"anyOf": [{"type": "string", "pattern": "^[a-z]{2}$"}, {"enum": ["", None]}]},
        },
    }
    return _batch_body("articles", article, settings.max_batch)


def event_body(settings: Settings) -> dict[str, Any]:
    """One event, a list of them, or {"events": [...]}: links of one block, positions from 1."""
    common = {"origin_id": ID_TEXT, "ts": ISO_TIME,
              "page_url": {"type": ["string", "null"], "maxLength": 2048},
              "index_build": {"type": ["string", "null"], "maxLength": 128}}
    block = {"type": "object", "additionalProperties": False, "required": ["type", "origin_id", "article_ids"],
             "properties": {**common, "type": {"const": "impression"},
                            "article_ids": {"type": "array", "items": ID_TEXT, "minItems": 1,
                                            "maxItems": settings.max_limit}}}
    link = {"type": "object", "additionalProperties": False,
            "required": ["type", "origin_id", "article_id", "position"],
            "properties": {**common, "type": {"enum": ["impression", "click"]}, "article_id": ID_TEXT,
                           "position": {"type": "integer", "minimum": 1, "maximum": settings.max_limit}}}
    return _batch_body("events", {"oneOf": [block, link]}, settings.max_events)


def _batch_body(key: str, row: dict[str, Any], max_rows: int) -> dict[str, Any]:
    rows = {"type": "array", "items": row, "minItems": 1, "maxItems": max_rows}
    wrapped = {"type": "object", "required": [key], "properties": {key: {"anyOf": [row, rows]}}}
    schema = {"anyOf": [row, rows, wrapped]}
    return {"requestBody": {"required": True, "content": {JSON: {"schema": schema}}}}
