/*
 * recsys related-headlines widget. No framework, no globals besides `window.recsys`.
 *
 *   <div data-recsys-article="ARTICLE_ID" data-recsys-limit="5"></div>
 *   <script src="https://API_HOST/widget.js" async></script>
 *
 * Placeholder attributes (all optional except the article id or URL):
 *   data-recsys-article / data-recsys-url   the article (id, or canonical URL)
 *   data-recsys-limit, -lang-policy, -section, -max-age-days, -exclude   as in GET /v1/related
 *   data-recsys-lang       language of heading and dates (default: <html lang>, then "uk")
 *   data-recsys-heading    heading text; data-recsys-heading-level "h2".."h6"
 *   data-recsys-href       link template with {id} and {url} (default: the item's canonical URL)
 *   data-recsys-thumbnails "true" to show item images
 *   data-recsys-timeout    ms before the request is given up (default 3000)
 *   data-recsys-api        API base URL (default: the origin this script was loaded from)
 * On the script tag: data-recsys-api (same), data-recsys-style="none" (no default styles).
 *
 * Whatever the placeholder holds stays there until a block is ready, so it is the fallback:
 * when the API fails, is slow or returns nothing, the page keeps it and nothing throws.
 */
(function () {
  "use strict";
  if (window.recsys && window.recsys.version) return; // included twice: the first copy does the work

  var script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  var HEADINGS = { uk: "Читайте також", ru: "Читайте также", en: "Related stories" };
  var STYLE =
    ":where(.recsys){font-family:var(--recsys-font,inherit);color:var(--recsys-color,inherit);" +
    "border-top:var(--recsys-border,2px solid currentColor);margin:var(--recsys-margin,1.5rem 0);padding-top:.5rem}" +
    ":where(.recsys__heading){font-size:var(--recsys-heading-size,1.1rem);text-transform:uppercase;" +
    "letter-spacing:.05em;margin:.5rem 0}" +
    ":where(.recsys__list){list-style:none;margin:0;padding:0}" +
    ":where(.recsys__item){margin:var(--recsys-gap,.5rem) 0;line-height:1.35}" +
    ":where(.recsys__link){color:var(--recsys-link-color,#0b5394);text-decoration:none}" +
    ":where(.recsys__link:hover,.recsys__link:focus-visible){text-decoration:underline}" +
    ":where(.recsys__thumb){width:var(--recsys-thumb-size,4rem);height:auto;vertical-align:middle;" +
    "margin-right:.5em;border-radius:2px}" +
    ":where(.recsys__outlet,.recsys__date){color:var(--recsys-muted-color,#666);font-size:.9em}";
  var blocks = 0;

  function attr(el, name, fallback) {
    var value = el && el.getAttribute("data-recsys-" + name);
    return value === null || value === undefined || value === "" ? fallback : value;
  }

  function apiBase(el) {
    var base = attr(el, "api", null) || attr(script, "api", null);
    if (!base && script && script.src) base = new URL(script.src, location.href).origin;
    return (base || location.origin).replace(/\/+$/, "");
  }

  function safeUrl(url) {
    if (!url) return null;
    try {
      var parsed = new URL(url, location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  function requestUrl(el, api) {
    var id = attr(el, "article", null);
    var query = new URLSearchParams();
    if (!id) query.set("url", attr(el, "url", ""));
    var params = { limit: "limit", lang_policy: "lang-policy", section: "section",
                   max_age_days: "max-age-days", exclude: "exclude" };
    Object.keys(params).forEach(function (name) {
      var value = attr(el, params[name], null);
      if (value !== null) query.set(name, value);
    });
    return api + "/v1/related" + (id ? "/" + encodeURIComponent(id) : "") + "?" + query.toString();
  }

  function pageLang(el) {
    return (attr(el, "lang", null) || document.documentElement.lang || "uk").slice(0, 2).toLowerCase();
  }

  function formatDate(iso, lang) {
    try {
      return new Intl.DateTimeFormat(lang, { day: "numeric", month: "long", year: "numeric" }).format(new Date(iso));
    } catch (e) {
      return String(iso).slice(0, 10);
    }
  }

  function hrefOf(el, item) {
    var template = attr(el, "href", null);
    if (!template) return safeUrl(item.url);
    return safeUrl(template.replace(/\{id\}/g, encodeURIComponent(item.id))
                           .replace(/\{url\}/g, encodeURIComponent(item.url || "")));
  }

  function node(tag, className, text) {
    var element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function itemNode(el, item, position, origin, lang) {
    var li = node("li", "recsys__item");
    var href = hrefOf(el, item);
    var link = node(href ? "a" : "span", "recsys__link");
    if (href) link.href = href;
    link.setAttribute("data-recsys-id", item.id);
    link.setAttribute("data-recsys-position", String(position));
    link.setAttribute("data-recsys-origin", origin);
    var image = attr(el, "thumbnails", "false") === "true" ? safeUrl(item.image_url) : null;
    if (image) {
      var img = node("img", "recsys__thumb");
      img.alt = ""; // decorative: the headline next to it is the link text
      img.loading = "lazy";
      img.decoding = "async";
      img.onerror = function () { img.remove(); };
      img.src = image;
      link.appendChild(img);
    }
    link.appendChild(node("span", "recsys__title", item.title));
    li.appendChild(link);
    if (item.source) {
      li.appendChild(document.createTextNode(" "));
      li.appendChild(node("span", "recsys__outlet", "– " + item.source));
    }
    if (item.published_at) {
      var time = node("time", "recsys__date", "· " + formatDate(item.published_at, lang));
      time.setAttribute("datetime", item.published_at);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(time);
    }
    return li;
  }

  function send(api, events) {
    var url = api + "/v1/events";
    var now = new Date().toISOString();
    var body = JSON.stringify({ events: events.map(function (e) { return Object.assign({ ts: now }, e); }) });
    try {
      // A string body goes as text/plain: no CORS preflight, and the beacon survives navigation.
      if (navigator.sendBeacon && navigator.sendBeacon(url, body)) return;
    } catch (e) { /* fall through to fetch */ }
    try {
      fetch(url, { method: "POST", body: body, keepalive: true, mode: "no-cors", credentials: "omit" })
        .catch(function () {});
    } catch (e) { /* events are best effort */ }
  }

  function pageUrl() {
    return location.origin + location.pathname; // no query or fragment: they may hold personal data
  }

  function watchImpression(section, api, base) {
    var sent = false;
    function fire() {
      if (sent) return;
      sent = true;
      var ids = [].map.call(section.querySelectorAll("[data-recsys-position]"), function (a) {
        return a.getAttribute("data-recsys-id");
      });
      send(api, [Object.assign({ type: "impression", article_ids: ids }, base)]);
    }
    if (!("IntersectionObserver" in window)) return fire();
    var observer = new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; })) {
        observer.disconnect();
        fire();
      }
    }, { threshold: 0.5 }); // counted as seen when half the block is on screen
    observer.observe(section);
  }

  function trackClicks(list, api, base) {
    function onClick(event) {
      if (event.type === "auxclick" && event.button !== 1) return;
      var link = event.target.closest && event.target.closest("[data-recsys-position]");
      if (!link) return;
      send(api, [Object.assign({
        type: "click",
        article_id: link.getAttribute("data-recsys-id"),
        position: Number(link.getAttribute("data-recsys-position"))
      }, base)]);
    }
    list.addEventListener("click", onClick);
    list.addEventListener("auxclick", onClick);
  }

  function render(el, data, api) {
    var lang = pageLang(el);
    var origin = data.article_id || attr(el, "article", "");
    var id = "recsys-heading-" + (++blocks);
    var level = /^h[2-6]$/.test(attr(el, "heading-level", "")) ? attr(el, "heading-level") : "h2";
    var section = node("section", "recsys");
    section.setAttribute("aria-labelledby", id);
    section.setAttribute("data-recsys-origin", origin);
    var heading = node(level, "recsys__heading", attr(el, "heading", HEADINGS[lang] || HEADINGS.en));
    heading.id = id;
    var list = node("ul", "recsys__list");
    data.items.forEach(function (item, i) { list.appendChild(itemNode(el, item, i + 1, origin, lang)); });
    section.appendChild(heading);
    section.appendChild(list);
    el.textContent = "";
    el.appendChild(section);
    el.setAttribute("data-recsys-state", "ready");
    var base = { origin_id: origin, page_url: pageUrl(), index_build: data.index_build };
    trackClicks(list, api, base);
    watchImpression(section, api, base);
  }

  function fail(el, why) {
    el.setAttribute("data-recsys-state", "failed");
    if (window.console && console.debug) console.debug("recsys: related block not shown:", why);
  }

  function load(el) {
    if (el.getAttribute("data-recsys-state")) return;
    el.setAttribute("data-recsys-state", "loading");
    var api = apiBase(el);
    var expired = false;
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timer = setTimeout(function () {
      expired = true;
      if (controller) controller.abort();
    }, Number(attr(el, "timeout", 3000)) || 3000);
    fetch(requestUrl(el, api), { credentials: "omit", signal: controller ? controller.signal : undefined })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        clearTimeout(timer);
        if (expired) return fail(el, "timeout");
        if (!data || !data.items || !data.items.length) return fail(el, "no items");
        render(el, data, api);
      })
      .catch(function (error) {
        clearTimeout(timer);
        fail(el, expired ? "timeout" : error);
      });
  }

  function safely(fn) {
    return function (arg) {
      try {
        fn(arg);
      } catch (e) {
        if (arg && arg.setAttribute) fail(arg, e);
      }
    };
  }

  var observer = "IntersectionObserver" in window
    ? new IntersectionObserver(function (entries) {
        entries.forEach(function (entry) {
          if (entry.isIntersecting) {
            observer.unobserve(entry.target);
            safely(load)(entry.target);
          }
        });
      }, { rootMargin: "300px 0px" }) // start a little before the block scrolls into view
    : null;

  function scan(root) {
    var found = (root || document).querySelectorAll("[data-recsys-article],[data-recsys-url]");
    [].forEach.call(found, safely(function (el) {
      if (el.getAttribute("data-recsys-state") || el.getAttribute("data-recsys-watched")) return;
      el.setAttribute("data-recsys-watched", "1");
      if (observer) observer.observe(el);
      else load(el);
    }));
  }

  function injectStyle() {
    if (attr(script, "style", "") === "none" || document.getElementById("recsys-style")) return;
    var style = node("style", null, STYLE);
    style.id = "recsys-style";
    (document.head || document.documentElement).appendChild(style);
  }

  window.recsys = { version: "1", scan: safely(scan), load: safely(load) };
  function start() {
    try {
      injectStyle();
      scan(document);
    } catch (e) { /* never break the page */ }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
