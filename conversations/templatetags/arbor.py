"""Template filters: markdown from users and models rendered safely.

markdown-it-py (CommonMark, raw HTML off) renders; Pygments highlights fenced code; nh3 (ammonia)
sanitises the result against an allow-list, so ``<script>``, event handlers, ``javascript:``
links and ``hx-*`` attributes never reach the page. Images are rendered as links, never loaded.
"""

from __future__ import annotations

import re

import nh3
from django import template
from django.conf import settings
from django.middleware.csrf import get_token
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import mark_safe
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

register = template.Library()

_FORMATTER = HtmlFormatter(nowrap=True)


def _highlight(code: str, lang: str, _attrs) -> str:
    try:
        lexer = get_lexer_by_name(lang) if lang else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    return highlight(code, lexer, _FORMATTER)


_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight}).enable("table").enable(
    "strikethrough"
)


def _image_as_link(renderer, tokens, idx, options, env) -> str:
    """``![alt](src)`` becomes a link to ``src`` (text: "image: alt"), never an ``<img>``: viewing
    an answer must not make the browser fetch anything, least of all one of this app's own URLs."""
    token = tokens[idx]
    alt = renderer.renderInlineAsText(token.children or [], options, env) or token.attrGet("src") or "image"
    title = token.attrGet("title")
    title_attr = f' title="{escape(title)}"' if title else ""
    return f'<a href="{escape(token.attrGet("src") or "")}"{title_attr}>image: {escape(alt)}</a>'


_MD.add_render_rule("image", _image_as_link)

# No <img>: images are rendered as links (above), so nothing in a message loads by itself.
ALLOWED_TAGS = {
    "p", "br", "hr", "pre", "code", "span", "em", "strong", "del", "blockquote", "ul", "ol", "li",
    "a", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "span": {"class"},
    "th": {"align"},
    "td": {"align"},
    "ol": {"start"},
}


def render_markdown(text: str) -> str:
    """Markdown → sanitised HTML (str). Links get ``rel="noopener noreferrer nofollow"``."""
    html = _MD.render(text or "")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


@register.filter(name="markdown")
def markdown_filter(text: str) -> str:
    return mark_safe(render_markdown(text))  # sanitised by nh3 above


# --- icons ---------------------------------------------------------------------------------------

ICONS = frozenset({
    "copy", "check", "edit", "regenerate", "continue", "fork", "compare", "trash", "menu", "sidebar", "close",
    "sun", "moon", "monitor", "chevron-left", "chevron-right", "stop", "send", "plus", "search", "tree", "more",
    "chevron-down", "thumb-up", "thumb-down", "pin",
})


@register.simple_tag
def icon(name: str) -> str:
    """An icon of static/arbor/icons.svg (``name``: one of :data:`ICONS`, else ValueError), as an
    inline ``<svg>`` that uses the sprite's symbol: decorative (``aria-hidden``); the button or link
    around it carries the accessible name."""
    if name not in ICONS:
        raise ValueError(f"no icon named {name!r}")
    href = f'{static("arbor/icons.svg")}#{name}'
    return mark_safe(  # a fixed name from ICONS and a static URL
        f'<svg class="icon" aria-hidden="true" focusable="false"><use href="{href}"></use></svg>'
    )


# --- the tree view's items ------------------------------------------------------------------------
# Rendered in Python rather than in a template loop: the tree view may show a thousand items and
# Django's template engine costs ~0.2 ms per item here, this ~5 µs. The markup is the one
# templates/conversations/tree.html documents; every value is escaped.

_PLACEHOLDER = "00000000-0000-4000-8000-000000000000"


def _truncate(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@register.simple_tag(takes_context=True)
def tree_items(context, items) -> str:
    """HTML of :class:`conversations.selectors.trees.Item` tokens (``<li>`` elements, well nested)."""
    session = context["session"]
    open_url = reverse("conversations:branch_open", args=[session.pk, _PLACEHOLDER])  # a POST: it stores the branch
    csrf = f'<input type="hidden" name="csrfmiddlewaretoken" value="{escape(get_token(context["request"]))}">'
    tree_url = reverse("conversations:session_tree", args=[session.pk])
    source_run = context.get("source_run")
    source_url = (reverse("conversations:session_tree", args=[source_run.session_id])
                  if source_run is not None and context.get("source_alive") else None)
    out: list[str] = []
    add = out.append
    for item in items:
        kind, n = item.kind, item.node
        if kind == "end_node":
            add("</ul></li>\n")
        elif kind == "end_branch":
            add("</ol></details></li>\n")
        elif kind in ("node", "node_open"):
            uid = str(n.uid)
            classes = f"node st-{escape(n.status)}" + (" on-path" if n.on_path else "") + (
                " active" if n.active else "") + (" shared" if n.shared else "")
            label = escape(_truncate(n.preview or "(empty)", 90))
            add(f'<li class="{classes}"><span class="dot st-{escape(n.status)}" title="{escape(n.status)}"></span>')
            if n.shared:
                add(f'<span class="node-label">{label}</span>')
                if source_url and n.uid == session.forked_from_run_id:
                    add(f' <a class="source-link" href="{source_url}">in the source session</a>')
            else:
                current = ' aria-current="true"' if n.active else ""
                add(f'<form method="post" action="{open_url.replace(_PLACEHOLDER, uid)}" class="inline">{csrf}'
                    f'<button type="submit" class="link node-label"{current}>{label}</button></form>')
            add(f' <span class="meta">#{n.depth + 1} · {escape(n.status)} · {escape(n.model)}'
                + (" · <strong>shown</strong>" if n.active else "") + "</span>")
            add('<ul class="branches">\n' if kind == "node_open" else "</li>\n")
        elif kind == "branch":
            label = "Conversation" if n.parent_id is None and n.on_path else f"Other version of turn #{n.depth + 1}"
            runs = f"{item.count} run{'s' if item.count != 1 else ''}" + (" · active branch" if n.on_path else "")
            add(f'<li class="branch{" on-path" if n.on_path else ""}"><details open><summary>'
                f'<span class="branch-label">{label}</span> <span class="muted">{runs}</span></summary>'
                f'<ol class="line">\n')
        elif kind == "elided":
            url = f"{tree_url}?chain={n.uid}&amp;n={item.count}"
            add(f'<li class="elided"><a href="{url}" hx-get="{url}" hx-target="closest li" hx-swap="outerHTML">'
                f'&vellip; {item.count} more run{"s" if item.count != 1 else ""} on this line</a></li>\n')
        elif kind == "more":
            url = f"{tree_url}?root={n.uid}"
            label = escape(_truncate(n.preview or "(empty)", 60))
            runs = f'{item.count} run{"s" if item.count != 1 else ""}'
            add(f'<li class="branch more"><a href="{url}" hx-get="{url}" hx-target="closest li" hx-swap="outerHTML">'
                f'&#9656; Other version of turn #{n.depth + 1}: {label} · {runs} not shown yet</a></li>\n')
    return mark_safe("".join(out))  # every interpolated value is escaped above


# --- errors as people read them ---------------------------------------------------------------------
# The socket and DNS errors a model call or a health check may end with, in plain words. The raw
# text stays in the run's audit page (conversations/audit_views.py) and the API.
_FRIENDLY_ERRORS = (
    (("connection refused", "errno 111", "errno 61"),
     "the model server refused the connection: is it running, and is the base URL right?"),
    (("name or service not known", "nodename nor servname", "errno -2", "errno -3", "getaddrinfo failed"),
     "the model server's host name is unknown: check the base URL."),
    (("network is unreachable", "no route to host", "errno 101", "errno 113"),
     "the model server's network cannot be reached from here."),
    (("connection reset", "errno 104", "remote end closed", "server disconnected"),
     "the model server closed the connection before answering."),
    (("timed out", "timeout"), "the model server did not answer in time."),
    (("connection error", "apiconnectionerror", "connecterror"),
     "the connection to the model server failed: is it running, and is the base URL right?"),
    (("certificate verify failed", "ssl:"), "the model server's TLS certificate was not accepted."),
)


@register.filter
def friendly_error(text) -> str:
    """``text`` (an error message) in plain words when it is one of the socket or DNS errors of
    :data:`_FRIENDLY_ERRORS` ("[Errno 111] Connection refused" → "Could not reach the model: the
    model server refused the connection: …"), else unchanged."""
    raw = str(text or "")
    lowered = raw.lower()
    for needles, meaning in _FRIENDLY_ERRORS:
        if any(needle in lowered for needle in needles):
            named = re.match(r"(Could not reach \S+?):? ", raw)
            return f"{named.group(1) if named else 'Could not reach the model'}: {meaning}"
    return raw


@register.simple_tag
def chat_feature(name: str) -> bool:
    """Whether the chat habit ``name`` (continue, thumbs, pins, date_groups) is on: the setting
    ``ARBOR_CHAT_<NAME>`` (config/settings/base.py)."""
    return bool(getattr(settings, f"ARBOR_CHAT_{name.upper()}", False))
