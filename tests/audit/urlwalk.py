"""Walking every URL pattern of the project (Django's resolver, django-ninja's routes included)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern

PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


@dataclass(frozen=True)
class Route:
    route: str  # "s/<str:session_id>/runs", regex for re_path patterns
    name: str  # "conversations:run_create"
    is_regex: bool
    params: tuple[tuple[str, str], ...]  # ((converter, name), ...)

    @property
    def namespace(self) -> str:
        return self.name.split(":", 1)[0] if ":" in self.name else ""

    def url(self, values: dict[str, str]) -> str:
        """The path with each ``<conv:name>`` replaced by ``values[name]``."""
        if self.is_regex:
            raise ValueError("regex routes are built with reverse()")
        return "/" + PARAM.sub(lambda m: str(values[m.group("name")]), self.route)


def routes() -> list[Route]:
    out: list[Route] = []

    def walk(patterns, prefix: str, namespaces: list[str], regex: bool):
        for p in patterns:
            is_regex = regex or isinstance(p.pattern, RegexPattern)
            text = str(p.pattern)
            if isinstance(p, URLResolver):
                ns = namespaces + ([p.namespace] if p.namespace else [])
                walk(p.url_patterns, prefix + text, ns, is_regex)
            elif isinstance(p, URLPattern):
                name = ":".join(namespaces + [p.name or ""])
                full = prefix + text
                params = tuple((m.group("converter") or "str", m.group("name")) for m in PARAM.finditer(full))
                out.append(Route(full, name, is_regex or not isinstance(p.pattern, RoutePattern), params))

    walk(get_resolver().url_patterns, "", [], False)
    return out
