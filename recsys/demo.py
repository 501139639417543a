"""The demo article page: one article with its related block, rendered as on the customer's site."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from recsys.errors import NotFound
from recsys.recommend import Filters
from recsys.store import Article

if TYPE_CHECKING:
    from recsys.engine import Engine

STYLE = """
body{font-family:Georgia,serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222;display:flex;gap:2rem}
main{flex:3} aside{flex:1;font-size:.9rem} a{color:#0b5394;text-decoration:none} a:hover{text-decoration:underline}
.meta{color:#666;font-size:.9rem} .related{border-top:3px solid #222;margin-top:2rem;padding-top:.5rem}
.related h2{font-size:1.1rem;text-transform:uppercase;letter-spacing:.05em} .related li{margin:.4rem 0}
.outlet{color:#666} .note{color:#999;font-size:.8rem}
"""

HEADINGS = {"uk": "Читайте також", "ru": "Читайте также"}


def headline_link(article: Article) -> str:
    """One entry of the block: 'Headline – Outlet', linking to the article's demo page."""
    outlet = f' <span class="outlet">– {escape(article.source)}</span>' if article.source else ""
    return f'<a href="/demo/{escape(article.id)}" data-url="{escape(article.url or "")}">{escape(article.title)}</a>{outlet}'


def _date(article: Article) -> str:
    return article.published_at.strftime("%Y-%m-%d %H:%M %Z") if article.published_at else ""


def _provenance(article: Article) -> str:
    if not article.original_url:
        return ""
    origin = escape(article.original_source or article.original_url)
    return f'<p class="meta">Translated from <a href="{escape(article.original_url)}">{origin}</a> ({escape(article.original_lang or "?")})</p>'


def page(engine: Engine, article_id: str | None, lang_policy: str = "same") -> str:
    """Full HTML of the demo page for an article (the newest one when no id is given)."""
    article = engine.store.get(article_id) if article_id else next(iter(engine.store.latest(1, "uk")), None)
    if article is None and article_id is None:
        article = next(iter(engine.store.latest(1)), None)
    if article is None:
        if article_id:
            raise NotFound(f"no article with id {article_id!r}")
        return f"<!doctype html><html><head><style>{STYLE}</style></head><body><main><p>No articles yet: run <code>recsys ingest FILE</code>.</p></main></body></html>"
    related = engine.related_to_article(article.id, Filters(limit=engine.settings.default_limit, lang_policy=lang_policy))
    block = "\n".join(f"<li>{headline_link(a)}</li>" for a, _ in related.items)
    relaxed = f'<p class="note">relaxed to fill the block: {", ".join(related.relaxed)}</p>' if related.relaxed else ""
    latest = "\n".join(f"<li>{headline_link(a)}</li>" for a in engine.store.latest(12, article.lang))
    other = "any" if lang_policy == "same" else "same"
    heading = HEADINGS.get(article.lang, "Related")
    return f"""<!doctype html>
<html lang="{escape(article.lang)}"><head><meta charset="utf-8"><title>{escape(article.title)}</title>
<style>{STYLE}</style></head>
<body><main><article>
<h1>{escape(article.title)}</h1>
<p class="meta">{escape(article.source or "")} · {escape(_date(article))} · {escape(article.section or "")}</p>
{_provenance(article)}
<p>{escape(article.text)}</p>
</article>
<section class="related" aria-labelledby="related-heading">
<h2 id="related-heading">{escape(heading)}</h2>
<ul>
{block}
</ul>{relaxed}
<p class="note">languages: {escape(lang_policy)} · <a href="/demo/{escape(article.id)}?lang_policy={other}">show {other}</a>
· <a href="/v1/related/{escape(article.id)}?lang_policy={escape(lang_policy)}">JSON</a> · <a href="/docs">API docs</a></p>
</section></main>
<aside><h2>Latest</h2><ul>
{latest}
</ul></aside></body></html>"""
