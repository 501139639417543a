"""The output of `recsys calibrate`: the calibration file and the Markdown summary printed with it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from recsys.thresholds import model_slug


def _round(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def write(result: dict, out: Path) -> Path:
    """recsys/calibration/<slug>.json (or the same name under `out`)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{model_slug(result['model'])}.json"
    path.write_text(json.dumps(_clean(result), indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _clean(value: object) -> object:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def table(result: dict) -> str:
    """The thresholds and their held-out precision/recall, as Markdown."""
    m = result["measured_on_heldout"]
    rows = [("story rule (all pairs)", f"story {result['story_threshold']}, dense {result['story_dense_threshold']}, "
             f"headline {result.get('story_title_threshold')}", m["same_story"]),
            ("story rule (cross-language)", f"dense {result['story_dense_threshold']}", m["same_story_cross_language"]),
            *((f"story rule: {name}", "", v) for name, v in m["same_story_by_set"].items()),
            *((f"story rule without the headline rule: {name}", "", v)
              for name, v in m.get("same_story_by_set_without_headline_rule", {}).items()),
            ("copy (dense) on story pairs", f"{result['copy_dense_threshold']}", m["copy_on_story_pairs"]),
            ("related floor", f"{result['related_floor']}", m["related"])]
    lines = [f"model {result['model']}: fusion {result['fusion']}, lexical_weight {result['lexical_weight']}", "",
             "| decision | threshold | precision | recall | pairs | positives |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {thr} | {v['precision']} | {v['recall']} | {v['pairs']} | {v['positives']} |"
              for name, thr, v in rows]
    tr = m["copy_recall_on_translations"]
    lines += ["", f"copy recall on held-out translation pairs: {tr['recall']} ({tr['pairs']} pairs)", "",
              "| fusion:weight | story-MRR fit | story-MRR held-out |", "|---|---|---|"]
    lines += [f"| {k} | {_round(v['fit'])} | {_round(v['heldout'])} |" for k, v in result["fusion_story_mrr"].items()]
    lines += ["", f"same-story precision target met: {result['story_precision_target']}; other targets:", "",
              "| target | story | story_dense | held-out precision | held-out recall |", "|---|---|---|---|---|"]
    lines += [f"| {t} | {_round(v['story_threshold'])} | {_round(v['story_dense_threshold'])} | "
              f"{v['heldout']['precision']} | {v['heldout']['recall']} |" for t, v in result["story_tradeoff"].items()]
    return "\n".join(lines)
