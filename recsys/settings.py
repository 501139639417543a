"""One Settings object, read from RECSYS_* environment variables and passed explicitly."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of one recsys instance (database, index, model, ranking)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="ignore")

    model: str | None = Field(
        default=None,
        description="sentence-transformers model: hub name or local path; unset = bundled offline default",
    )
    db_path: Path = Field(default=Path("recsys.db"), description="SQLite database file")
    index_dir: Path = Field(default=Path("index"), description="folder holding index builds")

    embed_fields: str = Field(default="title,text", description="article fields embedded, in order")
    embed_max_chars: int = Field(default=600, ge=20, description="characters of text kept (the lead)")
    batch_size: int = Field(default=64, ge=1)

    hnsw_threshold: int = Field(default=50_000, ge=1, description="exact search below, HNSW at or above")
    hnsw_m: int = Field(default=32, ge=4)
    hnsw_ef_search: int = Field(default=128, ge=8)
    faiss_threads: int = Field(default=1, ge=1, description="OpenMP threads for FAISS in the service")
    keep_builds: int = Field(default=2, ge=1, description="index builds kept on disk")

    default_limit: int = Field(default=5, ge=1)
    max_limit: int = Field(default=50, ge=1)
    min_candidates: int = Field(default=50, ge=1, description="first over-fetch from FAISS")
    max_candidates: int = Field(default=2000, ge=1, description="deepest over-fetch before relaxing")
    dedup_threshold: float = Field(
        default=0.92, ge=0.0, le=1.0, description="dense cosine at which two items are copies of one text"
    )
    dedup_lexical_threshold: float = Field(
        default=0.15, ge=0.0, le=1.0, description="lexical cosine at which two items are one story"
    )
    dedup_dense_story_threshold: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="dense cosine at which two items are one story; unset = the model's own value (recsys.json "
                    "in its folder), or off for models without one",
    )
    lexical_cache_entries: int = Field(default=50_000, ge=1, description="n-gram rows kept in memory")
    lexical_weight: float = Field(
        default=0.5, ge=0.0, description="weight of the character n-gram TF-IDF score (0 = dense only)"
    )
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
    cache_max_entries: int = Field(default=10_000, ge=0, description="answers kept in the in-process cache (0 = off)")
    widget_max_age: int = Field(default=3600, ge=0, description="Cache-Control max-age of /widget.js")
