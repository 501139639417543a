"""Evaluation output: JSON for scripts, a Markdown table for people, PNG charts (matplotlib)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from recsys.evaluate import CURVE_KS

COLUMNS = (
    ("recall@{k}", "R@{k}"), ("mrr", "MRR"), ("ndcg@{k}", "nDCG@{k}"), ("duplicate_rate", "dup"),
    ("same_language_share", "same lang"), ("coverage", "coverage"),
)


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(report: dict) -> str:
    """One table per dataset: a row per system, accuracy then beyond-accuracy columns."""
    k = report["config"]["k"]
    lines = ["# Offline evaluation", "", _describe(report["config"]), ""]
    for ds in report["datasets"]:
        lines += [f"## {ds['dataset']}", "",
                  f"{ds['articles']} articles, {ds['pairs']} labelled pairs, {ds['queries']} queries with a relevant partner.", ""]
        heads = [h.format(k=k) for _, h in COLUMNS] + ["age p50/p90 (days)", "Spearman", "Pearson"]
        lines += ["| system | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
        for r in ds["results"]:
            cells = [_fmt(r.get(key.format(k=k))) for key, _ in COLUMNS]
            cells.append(f"{_fmt(r['age_days']['median'])} / {_fmt(r['age_days']['p90'])}")
            cells += [_fmt(r["pair_agreement"]["spearman"]), _fmt(r["pair_agreement"]["pearson"])]
            lines.append(f"| {r['system']} | " + " | ".join(cells) + " |")
        lines += ["", f"![recall@k]({ds['dataset']}_recall_at_k.png) ![per language]({ds['dataset']}_recall_by_lang.png)", ""]
    return "\n".join(lines) + "\n"


def _describe(config: dict) -> str:
    models = ", ".join(m or "default (bundled)" for m in config["models"])
    return (f"k={config['k']}; relevant = pair score ≥ {config['threshold']} or same cluster; "
            f"lang_policy={config['lang_policy']}; as_of={config['as_of']}; split={config['split'] or 'dev if present'}; "
            f"at most {config['max_queries']} queries per set (seed {config['seed']}); models: {models}. "
            "dup = share of items repeating a story shown higher in the list; age = query time minus item time.")


def charts(ds: dict, out: Path) -> list[Path]:
    """recall@k curves per system and per-language recall bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in ds["results"]:
        ax.plot(CURVE_KS, [r[f"recall@{c}"] for c in CURVE_KS], marker="o", label=r["system"])
    ax.set(xlabel="k", ylabel="recall@k", title=f"{ds['dataset']}: recall@k", ylim=(0, 1))
    ax.legend(fontsize=7)
    curve = out / f"{ds['dataset']}_recall_at_k.png"
    fig.tight_layout()
    fig.savefig(curve, dpi=100)
    plt.close(fig)

    langs = sorted({lang for r in ds["results"] for lang in r["per_language_recall"]})
    fig, ax = plt.subplots(figsize=(max(6, len(langs) * 1.2), 4))
    width = 0.8 / max(1, len(ds["results"]))
    for i, r in enumerate(ds["results"]):
        ax.bar([j + i * width for j in range(len(langs))], [r["per_language_recall"].get(lg, 0.0) for lg in langs],
               width, label=r["system"])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(langs))], langs)
    ax.set(ylabel="recall@k", title=f"{ds['dataset']}: recall by query language", ylim=(0, 1))
    ax.legend(fontsize=7)
    bars = out / f"{ds['dataset']}_recall_by_lang.png"
    fig.tight_layout()
    fig.savefig(bars, dpi=100)
    plt.close(fig)
    return [curve, bars]


def write(report: dict, out: Path) -> list[Path]:
    """results.json, results.md and the charts, written into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ds in report["datasets"]:
        written += charts(ds, out)
    (out / "results.json").write_text(json.dumps(_clean(report), indent=2, ensure_ascii=False, allow_nan=False))
    (out / "results.md").write_text(markdown(report), encoding="utf-8")
    return [out / "results.json", out / "results.md", *written]


def _clean(value: object) -> object:
    """NaN (an undefined metric) becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
