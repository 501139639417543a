"""The related block as server-rendered HTML: the same markup and classes as static/widget.js builds.

Sites without JavaScript (search engines, AMP-like pages) include this fragment instead of the
script. Every value is escaped, and only http(s) links and images are emitted: the fragment is
served from the API's own origin, so it must never carry script.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from html import escape
from importlib import resources
from urllib.parse import urlsplit

from recsys.article import Headline

HEADINGS = {"uk": "Читайте також", "ru": "Читайте также", "en": "Related stories"}
DEFAULT_LANG = "uk"

MONTHS = {
    "uk": ("січня", "лютого", "березня", "квітня", "травня", "червня", "липня", "серпня", "вересня",
           "жовтня", "листопада", "грудня"),
    "ru": ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября",
           "октября", "ноября", "декабря"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"),
}

# Served with the fragment: opened directly in a browser, it can show images and nothing active.
FRAGMENT_CSP = "default-src 'none'; img-src http: https:; style-src 'unsafe-inline'"


def widget_js() -> bytes:
    """The widget script as shipped in the package."""
    return (resources.files("recsys") / "static" / "widget.js").read_bytes()


def heading(lang: str | None) -> str:
    """The block's heading in the page's language (Ukrainian when unknown)."""
    return HEADINGS.get((lang or DEFAULT_LANG)[:2].lower(), HEADINGS["en"])


def format_date(when: datetime | None, lang: str | None) -> str:
    """'5 жовтня 2026' style dates; the month table falls back to English."""
    if when is None:
        return ""
    months = MONTHS.get((lang or DEFAULT_LANG)[:2].lower(), MONTHS["en"])
    return f"{when.day} {months[when.month - 1]} {when.year}"


def safe_url(url: str | None) -> str | None:
    """The URL when it is absolute http(s), else None (no javascript: or data: links)."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # such as "http://[x" (a bad IPv6 host): not a link
        return None
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _item(article: Headline, position: int, origin_id: str, lang: str | None, thumbnails: bool) -> str:
    href = safe_url(article.url)
    image = safe_url(article.image_url) if thumbnails else None
    thumb = f'<img class="recsys__thumb" src="{escape(image)}" alt="" loading="lazy">' if image else ""
    title = f'{thumb}<span class="recsys__title">{escape(article.title)}</span>'
    attrs = (f'data-recsys-id="{escape(article.id)}" data-recsys-position="{position}" '
             f'data-recsys-origin="{escape(origin_id)}"')
    link = (f'<a class="recsys__link" href="{escape(href)}" {attrs}>{title}</a>' if href
            else f'<span class="recsys__link" {attrs}>{title}</span>')
    outlet = f' <span class="recsys__outlet">– {escape(article.source)}</span>' if article.source else ""
    date = ""
    if article.published_at is not None:
        stamp = escape(article.published_at.isoformat())
        date = f' <time class="recsys__date" datetime="{stamp}">· {escape(format_date(article.published_at, lang))}</time>'
    return f'<li class="recsys__item">{link}{outlet}{date}</li>'


def fragment(origin_id: str, items: list[tuple[Headline, float]], lang: str | None, thumbnails: bool = False) -> str:
    """The block for `origin_id`: a labelled region holding a heading and a list of links ('' when empty)."""
    if not items:
        return ""
    # A stable id (no per-process hash seed): the same answer must be the same bytes for its ETag.
    heading_id = "recsys-heading-" + hashlib.sha1(origin_id.encode()).hexdigest()[:8]
    lines = "\n".join(_item(a, pos, origin_id, lang, thumbnails) for pos, (a, _) in enumerate(items, start=1))
    return (f'<section class="recsys" aria-labelledby="{heading_id}" data-recsys-origin="{escape(origin_id)}">\n'
            f'<h2 class="recsys__heading" id="{heading_id}">{escape(heading(lang))}</h2>\n'
            f'<ul class="recsys__list">\n{lines}\n</ul>\n</section>\n')
