"""The demo article page: one article, server-rendered, with its related block drawn by the widget.

The page embeds the block the way a customer's site would: a placeholder element plus one
`<script src="/widget.js" async>` tag. The widget fetches /v1/related when the block nears the
viewport; if that fails, the placeholder keeps its fallback content and the page is unaffected.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING
from urllib.parse import quote

from recsys.article import Article
from recsys.errors import NotFound
from recsys.widget import safe_url

if TYPE_CHECKING:
    from recsys.engine import Engine

# The widget's own look is tuned here only through its CSS variables, as a customer would do.
STYLE = """
body{font-family:Georgia,serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222;display:flex;gap:2rem}
main{flex:3} aside{flex:1;font-size:.9rem} a{color:#0b5394;text-decoration:none} a:hover{text-decoration:underline}
.meta{color:#666;font-size:.9rem} .related{margin-top:2rem;min-height:6rem}
.outlet{color:#666} .note{color:#999;font-size:.8rem}
.recsys{--recsys-font:Georgia,serif;--recsys-link-color:#0b5394;--recsys-border:3px solid #222}
"""


def _segment(article_id: str) -> str:
    """An id as one URL path segment, escaped for an attribute (ids stored before the id rule may hold / or ?)."""
    return escape(quote(article_id, safe=""))


def headline_link(article: Article) -> str:
    """One entry of the 'Latest' list: 'Headline – Outlet', linking to the article's demo page."""
    outlet = f' <span class="outlet">– {escape(article.source)}</span>' if article.source else ""
    url = escape(safe_url(article.url) or "")
    return f'<a href="/demo/{_segment(article.id)}" data-url="{url}">{escape(article.title)}</a>{outlet}'


def _date(article: Article) -> str:
    return article.published_at.strftime("%Y-%m-%d %H:%M %Z") if article.published_at else ""


def _provenance(article: Article) -> str:
    if not article.original_url:
        return ""
    origin = escape(article.original_source or article.original_url)
    # the page is on the API's origin: a javascript: link here would run there when clicked
    href = safe_url(article.original_url)
    source = f'<a href="{escape(href)}">{origin}</a>' if href else origin
    return f'<p class="meta">Translated from {source} ({escape(article.original_lang or "?")})</p>'


def placeholder(article: Article, limit: int, lang_policy: str) -> str:
    """The widget's placeholder: what a customer puts under each article."""
    ident = escape(article.id)
    return (f'<div class="related" id="related" data-recsys-article="{ident}" data-recsys-limit="{limit}" '
            f'data-recsys-lang-policy="{escape(lang_policy)}" data-recsys-href="/demo/{{id}}"></div>\n'
            '<script src="/widget.js" async></script>')


def page(engine: Engine, article_id: str | None, lang_policy: str = "same") -> str:
    """Full HTML of the demo page for an article (the newest one when no id is given)."""
    article = engine.store.get(article_id) if article_id else next(iter(engine.store.latest(1, "uk")), None)
    if article is None and article_id is None:
        article = next(iter(engine.store.latest(1)), None)
    if article is None:
        if article_id:
            raise NotFound(f"no article with id {article_id!r}")
        return f"<!doctype html><html><head><style>{STYLE}</style></head><body><main><p>No articles yet: run <code>recsys ingest FILE</code>.</p></main></body></html>"
    latest = "\n".join(f"<li>{headline_link(a)}</li>" for a in engine.store.latest(12, article.lang))
    other = "any" if lang_policy == "same" else "same"
    ident = _segment(article.id)
    return f"""<!doctype html>
<html lang="{escape(article.lang)}"><head><meta charset="utf-8"><title>{escape(article.title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style></head>
<body><main><article>
<h1>{escape(article.title)}</h1>
<p class="meta">{escape(article.source or "")} · {escape(_date(article))} · {escape(article.section or "")}</p>
{_provenance(article)}
<p>{escape(article.text)}</p>
</article>
{placeholder(article, engine.settings.default_limit, lang_policy)}
<p class="note">languages: {escape(lang_policy)} · <a href="/demo/{ident}?lang_policy={other}">show {other}</a>
· <a href="/v1/related/{ident}?lang_policy={escape(lang_policy)}">JSON</a>
· <a href="/v1/related/{ident}/fragment?lang_policy={escape(lang_policy)}">HTML fragment</a>
· <a href="/docs">API docs</a></p>
</main>
<aside><h2>Latest</h2><ul>
{latest}
</ul></aside></body></html>"""
