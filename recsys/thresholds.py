"""Ranking knobs per model: the calibrated values, overridden by explicit settings.

Score scales differ between models (random pairs of Russian headlines average 0.08 with the
static student and 0.79 with e5), so every threshold is fitted per model by `recsys calibrate`
and shipped as recsys/calibration/<model-slug>.json; a `recsys.json` beside a local model
folder serves the same purpose for models that are not shipped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from recsys.errors import ConfigError
from recsys.recommend import FUSIONS, Ranking
from recsys.settings import Settings

CALIBRATED = ("copy_dense_threshold", "story_threshold", "story_dense_threshold", "story_title_threshold",
              "story_window_days", "story_threshold_in_window", "related_floor", "lexical_weight",
              "story_lexical_weight", "fusion")
CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"


def model_slug(name: str) -> str:
    """File name of a model's calibration: non-alphanumerics become '-'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def load_calibration(model: str, folder: Path | None = None) -> dict:
    """The shipped calibration of `model`, else recsys.json in its folder, else nothing."""
    for path in (CALIBRATION_DIR / f"{model_slug(model)}.json", (folder / "recsys.json") if folder else None):
        if path is not None and path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return {}


def ranking_from(settings: Settings, calibration: dict) -> Ranking:
    """Knobs: a setting wins, then the model's calibration, then the uncalibrated defaults."""
    values = {}
    for name in CALIBRATED:
        chosen = getattr(settings, name)
        if chosen is None:
            chosen = calibration.get(name)
        if chosen is not None:
            values[name] = float("inf") if name == "story_window_days" and chosen == "inf" else chosen
    if values.get("fusion", "blend") not in FUSIONS:
        raise ConfigError(f"fusion {values['fusion']!r}: choose one of {', '.join(FUSIONS)}")
    return Ranking(**values, recency_weight=settings.recency_weight,
                   recency_half_life_days=settings.recency_half_life_days, collapse=settings.collapse_stories)
