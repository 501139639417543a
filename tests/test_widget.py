"""The server-rendered block (recsys/widget.py): markup, escaping, safe links, dates and headings."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from recsys.article import Article
from recsys.widget import fragment, format_date, heading, safe_url, widget_js


def article(ident: str, **fields: object) -> Article:
    base = {"id": ident, "title": f"Title {ident}", "lang": "uk", "url": f"https://news.example/{ident}",
            "source": "Голос Харкова", "published_at": "2026-10-05T14:00:00+03:00"}
    return Article(**{**base, **fields})


def test_fragment_is_a_labelled_list_of_links_with_outlet_date_and_position() -> None:
    html = fragment("b1", [(article("b2"), 0.9), (article("b3", source=None, published_at=None), 0.8)], "uk")
    assert html.startswith('<section class="recsys" aria-labelledby="recsys-heading-')
    label = html.split('aria-labelledby="')[1].split('"')[0]
    assert f'<h2 class="recsys__heading" id="{label}">Читайте також</h2>' in html
    assert html.count('<li class="recsys__item">') == 2
    assert ('<a class="recsys__link" href="https://news.example/b2" data-recsys-id="b2" data-recsys-position="1" '
            'data-recsys-origin="b1"><span class="recsys__title">Title b2</span></a>') in html
    assert '<span class="recsys__outlet">– Голос Харкова</span>' in html
    assert '<time class="recsys__date" datetime="2026-10-05T14:00:00+03:00">· 5 жовтня 2026</time>' in html
    assert 'data-recsys-position="2"' in html and html.count("recsys__outlet") == 1
    assert fragment("b1", [], "uk") == ""  # nothing to show: no empty heading on the page
    # No per-process randomness: every server process gives the same bytes for one ETag.
    assert label == "recsys-heading-" + hashlib.sha1(b"b1").hexdigest()[:8]


def test_fragment_escapes_everything_and_drops_unsafe_urls() -> None:
    evil = article('x"><script>alert(1)</script>', title="<img src=x onerror=alert(1)>", source="<b>Outlet</b>",
                   url="javascript:alert(1)", image_url="data:image/png;base64,AAAA")
    html = fragment('o"1', [(evil, 1.0)], "en", thumbnails=True)
    assert "<script>" not in html and "<img src=x" not in html and "<b>" not in html
    assert "javascript:" not in html and "data:image" not in html and "<img" not in html
    assert '<span class="recsys__link" data-recsys-id="x&quot;&gt;&lt;script&gt;' in html  # no URL: text, no link
    assert 'data-recsys-origin="o&quot;1"' in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    thumb = fragment("o", [(article("t", image_url="https://img.example/t.jpg"), 1.0)], "uk", thumbnails=True)
    assert '<img class="recsys__thumb" src="https://img.example/t.jpg" alt="" loading="lazy">' in thumb
    assert "<img" not in fragment("o", [(article("t", image_url="https://img.example/t.jpg"), 1.0)], "uk")


def test_safe_url_dates_and_headings() -> None:
    assert safe_url("https://a.example/x?y=1") == "https://a.example/x?y=1" and safe_url(" http://a.example ") == "http://a.example"
    assert [safe_url(u) for u in ("javascript:alert(1)", "JAVASCRIPT:x", "/relative", "data:x", "", None)] == [None] * 6
    when = datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=2)))
    assert (format_date(when, "uk"), format_date(when, "ru"), format_date(when, "en")) == (
        "1 березня 2026", "1 марта 2026", "1 March 2026")
    assert format_date(when, "de") == "1 March 2026" and format_date(None, "uk") == ""
    assert (heading(None), heading("ru"), heading("en"), heading("pl")) == (
        "Читайте також", "Читайте также", "Related stories", "Related stories")


def test_widget_script_ships_in_the_package() -> None:
    script = widget_js().decode()
    assert "data-recsys-article" in script and "sendBeacon" in script and "AbortController" in script
