"""One Settings object, read from RECSYS_* environment variables and passed explicitly."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.errors import ConfigError

log = logging.getLogger(__name__)
PREFIX = "RECSYS_"
NOT_SETTINGS = ("RECSYS_BENCH_",)  # the benchmark scripts' own variables


class Settings(BaseSettings):
    """Configuration of one recsys instance (database, index, model, ranking)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="ignore")

    model: str | None = Field(
        default=None,
        description="sentence-transformers model: hub name or local path; unset = bundled offline default",
    )
    db_path: Path = Field(default=Path("recsys.db"), description="SQLite database file")
    index_dir: Path = Field(default=Path("index"), description="folder holding index builds")
    models_dir: Path = Field(
        default=Path("~/.cache/recsys/models"),
        description="where built-in models made on first use live (builtin:multilingual-e5-small, ~470 MB)",
    )
    model_backend: str = Field(
        default="auto", pattern=r"^(auto|torch|onnx-int8|onnx)$",
        description="how builtin:multilingual-e5-small runs: auto = onnx-int8 (ONNX Runtime, int8 weights; keeps "
        ">= 99 % of fp32 quality, docs/e5_backends.md), torch (sentence-transformers fp32), onnx (ONNX Runtime "
        "fp32); other models run with torch",
    )

    embed_fields: str = Field(default="title,text", description="article fields embedded, in order")
    embed_max_chars: int = Field(default=600, ge=20, description="characters of text kept (the lead)")
    batch_size: int = Field(default=64, ge=1)

    hnsw_threshold: int = Field(default=50_000, ge=1, description="exact search below, HNSW at or above")
    hnsw_m: int = Field(default=16, ge=4)
    hnsw_ef_search: int = Field(default=64, ge=8)
    faiss_threads: int = Field(default=1, ge=1, description="OpenMP threads for FAISS in the service")
    keep_builds: int = Field(default=2, ge=1, description="index builds kept on disk")

    default_limit: int = Field(default=5, ge=1)
    max_limit: int = Field(default=50, ge=1)
    min_candidates: int = Field(default=24, ge=1, description="first over-fetch from FAISS")
    max_candidates: int = Field(default=400, ge=1, description="deepest over-fetch before relaxing")
    copy_dense_threshold: float | None = Field(
        default=None, ge=0.0, le=2.0, description="dense cosine at which two items in two languages are one text (a translation); "
        "unset = the model's calibration")
    story_threshold: float | None = Field(
        default=None, ge=0.0, le=2.0, description="fused pair score at which two items are one story (collapsed); "
        "unset = the model's calibration")
    story_dense_threshold: float | None = Field(
        default=None, ge=0.0, le=2.0, description="dense cosine at which two items in any languages are one story; "
        "unset = the model's calibration (2 = off)")
    story_title_threshold: float | None = Field(
        default=None, ge=0.0, le=2.0, description="cosine of two items' headline vectors at which they are one story; "
        "unset = the model's calibration (2 = off)")
    story_window_days: float | None = Field(
        default=None, gt=0.0, description="days within which two dated items can be one story; unset = the model's "
        "calibration (none: no limit)")
    story_threshold_in_window: float | None = Field(
        default=None, ge=0.0, le=2.0, description="fused pair score at which two dated items within the story window "
        "are one story; unset = the model's calibration (else story_threshold)")
    related_floor: float | None = Field(
        default=None, ge=-1.0, le=2.0, description="fused score to the article below which an item is not related; "
        "unset = the model's calibration")
    lexical_weight: float | None = Field(
        default=None, ge=0.0, description="weight of the character n-gram TF-IDF score (0 = dense only); "
        "unset = the model's calibration")
    story_lexical_weight: float | None = Field(
        default=None, ge=0.0, description="weight of the lexical score in the pair score that decides one story "
        "(0 = dense only); unset = the model's calibration (else lexical_weight)")
    fusion: str | None = Field(
        default=None, description="blend | weighted | rrf | dense: how dense and lexical scores combine; "
        "unset = the model's calibration")
    lexical_max_chars: int = Field(
        default=300, ge=20, description="characters of the embedded text (title first) that the lexical score reads")
    collapse_stories: bool = Field(default=True, description="show one item per story")
    fill: bool = Field(default=True, description="fill a short block with the newest items, marked reason=fill")
    recency_weight: float = Field(default=0.05, ge=0.0, description="rank boost for items close in time")
    recency_half_life_days: float = Field(default=14.0, gt=0.0)

    max_body_bytes: int = Field(default=5_000_000, ge=1024)
    max_batch: int = Field(default=1000, ge=1, description="articles per POST /v1/articles")
    max_url_bytes: int = Field(default=8192, ge=256, description="request path plus query string")
    max_event_body_bytes: int = Field(default=65_536, ge=1024, description="body of POST /v1/events")
    max_events: int = Field(default=100, ge=1, description="events per POST /v1/events")
    max_exclude: int = Field(default=100, ge=0, description="ids in a related request's exclude")

    api_keys: SecretStr = Field(
        default=SecretStr(""), description="comma-separated keys for writes (X-API-Key); unset = writes refused"
    )
    cors_origins: str = Field(default="", description="comma-separated origins allowed to call the API from pages")
    rate_limit_per_s: float = Field(default=10.0, ge=0.0, description="reads per second per client (0 = off)")
    rate_limit_burst: int = Field(default=50, ge=1, description="reads a client may make at once")
    rate_limit_clients: int = Field(default=100_000, ge=1, description="clients tracked before the idlest go")
    trusted_proxy_hops: int = Field(
        default=0, ge=0, description="proxies in front that append to X-Forwarded-For (0 = use the socket peer)"
    )
    cache_max_age: int = Field(default=60, ge=0, description="seconds related answers stay fresh (HTTP and in-process)")
    cache_stale_while_revalidate: int = Field(default=600, ge=0, description="Cache-Control stale-while-revalidate")
    invalidate_neighbours: int = Field(
        default=100, ge=0, description="on a write, cached answers of this many nearest articles go stale too"
    )
    cache_max_entries: int = Field(default=200_000, ge=0, description="answers kept in the in-process cache (0 = off)")
    cache_max_bytes: int = Field(default=512 * 2**20, ge=0, description="memory the in-process answer cache may hold "
                                 "(bodies plus bookkeeping); the least recently used answers go first")
    cache_ttl: int = Field(default=0, ge=0, description="seconds an in-process answer may be served (0 = until a "
                           "write or build invalidates it)")
    materialize: bool = Field(default=True, description="compute the default block of every stored article in the "
                              "background at start-up and after writes, newest first (up to cache_max_entries)")
    widget_max_age: int = Field(default=3600, ge=0, description="Cache-Control max-age of /widget.js")
    malloc_arenas: int = Field(default=2, ge=0, description="glibc malloc arenas of a serving process (0 = the C "
                               "library's default of up to 8 per core, whose resident memory creeps under load)")
    demo: bool = Field(default=False, description="serve the demo page at / and /demo (`recsys demo` turns it on)")


def load_settings(**overrides: object) -> Settings:
    """Settings from RECSYS_* variables (and overrides); a bad value is a ConfigError naming the variable,
    and each RECSYS_* variable that is no setting is logged as a warning."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(error) for error in exc.errors())) from None
    for warning in unknown_variables(os.environ):
        log.warning(warning)
    return settings


def _describe(error: Mapping) -> str:
    """One line: the variable, the value given, what pydantic expected, and what the setting is for."""
    name = str(error["loc"][0]) if error.get("loc") else "?"
    field = Settings.model_fields.get(name)
    purpose = f" ({field.description})" if field is not None and field.description else ""
    return f"bad setting {PREFIX}{name.upper()}={error.get('input')!r}: {error['msg']}{purpose}"


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each RECSYS_* variable that is no setting, naming the closest known one."""
    known = sorted(PREFIX + name.upper() for name in Settings.model_fields)
    warnings = []
    for var in sorted(v for v in environ if v.upper().startswith(PREFIX) and not v.upper().startswith(NOT_SETTINGS)):
        if var.upper() in known:
            continue
        close = difflib.get_close_matches(var.upper(), known, n=1, cutoff=0.6)
        warnings.append(f"{var} is not a recsys setting and is ignored" + (f"; did you mean {close[0]}?" if close else ""))
    return warnings
