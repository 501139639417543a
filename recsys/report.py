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


STORY_COLUMNS = (
    ("story_recall@{k}", "story-R@{k}"), ("story_mrr", "story-MRR"), ("story_ndcg@{k}", "story-nDCG@{k}"),
    ("recall@{k}", "R@{k}"), ("mrr", "MRR"), ("filler_rate", "filler"), ("filler_judged", "judged"),
    ("fill_share", "marked fill"),
    ("collapse_precision", "collapse prec."), ("collapsed_items", "collapsed"),
)
DEFINITIONS = (
    "Story level: a relevant item counts as found when it is shown or was collapsed into a shown item "
    "(story-nDCG: it gains at the rank of the item it was collapsed into; capped at 1). "
    "filler = share of the top-k items whose relation to the query is labelled and which are neither its story "
    "nor labelled related: in cluster sets every clustered item is labelled (another cluster = filler); in pair "
    "sets only the query's labelled partners are (score below the relevance threshold = filler); unlabelled "
    "items are left out (judged = how many shown items the labels could judge). "
    "marked fill = share of shown items the engine itself marked reason=fill. "
    "collapse prec. = share of collapsed items that share the story of the item shown for them (same cluster, "
    "or a pair scored at or above the story threshold, or linked by such pairs), among those the labels can judge; "
    "collapsed = collapsed items in the top-k answers. "
    "The same-story decision is the engine's rule (COPY or SAME_STORY) on engine.pair_features with its "
    "calibrated thresholds, against tgcontest (OK), SemEval (overall score 1-1.75) and sample-corpus clusters."
)


def _row(r: dict, columns: tuple, k: int) -> str:
    return f"| {r['system']} | " + " | ".join(_fmt(r.get(key.format(k=k))) for key, _ in columns) + " |"


def _decision_lines(ds: dict) -> list[str]:
    rows = {m: d for m, d in (ds.get("same_story_decision") or {}).items() if d}
    if not rows:
        return []
    lines = ["Same-story decision against labels:", "", "| model | precision | recall | pairs | same-story pairs |",
             "|---|---|---|---|---|"]
    lines += [f"| {m} | {_fmt(d['precision'])} | {_fmt(d['recall'])} | {d['pairs']} | {d['positives']} |"
              for m, d in rows.items()]
    return lines + [""]


def markdown(report: dict) -> str:
    """Per dataset: a story-level table, the same-story decision, then item-level and beyond-accuracy numbers."""
    k = report["config"]["k"]
    lines = ["# Offline evaluation", "", _describe(report["config"]), "", DEFINITIONS, ""]
    for ds in report["datasets"]:
        lines += [f"## {ds['dataset']}", "",
                  f"{ds['articles']} articles, {ds['pairs']} labelled pairs, {ds['queries']} queries with a relevant partner.", ""]
        heads = [h.format(k=k) for _, h in STORY_COLUMNS]
        lines += ["| system | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
        lines += [_row(r, STORY_COLUMNS, k) for r in ds["results"]] + [""]
        lines += _decision_lines(ds)
        heads = [h.format(k=k) for _, h in COLUMNS] + ["age p50/p90 (days)", "Spearman", "Pearson"]
        lines += ["| system | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
        for r in ds["results"]:
            cells = [_fmt(r.get(key.format(k=k))) for key, _ in COLUMNS]
            cells.append(f"{_fmt(r['age_days']['median'])} / {_fmt(r['age_days']['p90'])}")
            cells += [_fmt(r["pair_agreement"]["spearman"]), _fmt(r["pair_agreement"]["pearson"])]
            lines.append(f"| {r['system']} | " + " | ".join(cells) + " |")
        name = ds["dataset"]
        lines += ["", f"![story level]({name}_story.png) ![recall@k]({name}_recall_at_k.png) "
                      f"![per language]({name}_recall_by_lang.png)", ""]
    return "\n".join(lines) + "\n"


def _describe(config: dict) -> str:
    models = ", ".join(m or "default (bundled)" for m in config["models"])
    return (f"k={config['k']}; relevant = pair score ≥ {config['threshold']} or same cluster; one story = same cluster "
            f"or pair score ≥ {config.get('story_threshold', 0.75)}; "
            f"lang_policy={config['lang_policy']}; as_of={config['as_of']}; split={config['split'] or 'dev if present'}; "
            f"at most {config['max_queries']} queries per set (seed {config['seed']}); models: {models}. "
            "dup = share of items repeating a story shown higher in the list; age = query time minus item time.")


def story_chart(ds: dict, out: Path, k: int) -> Path:
    """Grouped bars per system: story-R@k next to item R@k, story-MRR next to MRR, and the filler rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ((f"story_recall@{k}", f"story-R@{k}"), (f"recall@{k}", f"R@{k}"), ("story_mrr", "story-MRR"),
            ("mrr", "MRR"), ("filler_rate", "filler"))
    systems = [r["system"] for r in ds["results"]]
    fig, ax = plt.subplots(figsize=(max(7, len(systems) * 1.1), 4))
    width = 0.8 / len(keys)
    for i, (key, label) in enumerate(keys):
        values = [r.get(key) for r in ds["results"]]
        ax.bar([j + i * width for j in range(len(systems))],
               [0.0 if v is None or math.isnan(v) else v for v in values], width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(systems))], systems, rotation=30, ha="right", fontsize=7)
    ax.set(ylabel="share", title=f"{ds['dataset']}: story level vs item level", ylim=(0, 1))
    ax.legend(fontsize=7, ncol=len(keys))
    path = out / f"{ds['dataset']}_story.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
        written += [story_chart(ds, out, report["config"]["k"]), *charts(ds, out)]
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
