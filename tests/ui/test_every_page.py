"""Every main page in real Chromium, with every menu open: no console error or warning (under the real
CSP), and axe-core finds no serious or critical violation in either theme at 1280 and 390 px.

"Every menu open": each ``<details>`` on the page (the turn's ⋯ menu with its Label, Share and Prune
forms, exports, rename, the tree map's keys, tool traffic, summaries…), the session details toggle,
and on a phone the site menu and the sessions drawer. The pages: the sessions list, a chat (and a
fork, a queued run, a shared link), the tree, branches, a diff, search, comparisons (list, one,
new, results, suites), import (and an import job), agents (list and one), connections (list and
one), a run's audit page, its context, the chat's memory settings, the audit log and the admin.
"""

from __future__ import annotations

import pytest

from archive.models import ImportJob
from memory.models import Agent
from tests.ui.conftest import login
from tests.ui.test_chat_ux import DESKTOP, PHONE, _staff_user, audited_run, axe, build_site, settle

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Inline disclosures all open at once; pop-up menus (details.menu: a turn's ⋯, Export) one at a time,
# as a user can have them (each with every form inside open): the last of each kind on the page.
OPEN_DISCLOSURES = """() => {
  let opened = 0;
  for (const d of document.querySelectorAll('details:not([open])')) {
    if (!d.matches('details.menu, details.menu details')) { d.open = true; opened++; }
  }
  for (const b of document.querySelectorAll('.details-toggle[aria-expanded="false"]')) { b.click(); opened++; }
  return opened;
}"""
MENU_KINDS = """() => [...new Set([...document.querySelectorAll('details.menu')]
  .map(d => [...d.classList].filter(c => c !== 'menu' && c !== 'up')[0]))]"""
OPEN_MENU = """(kind) => {
  for (const d of document.querySelectorAll('details.menu[open]')) d.open = false;
  const menus = document.querySelectorAll('details.menu.' + kind);
  const menu = menus[menus.length - 1];
  menu.querySelector('summary').click();
  for (const d of menu.querySelectorAll('details:not([open])')) d.open = true;
  return menu.open;
}"""


def every_page(user, llm_server) -> dict[str, str]:
    """Name -> path of every main page, with content."""
    paths = build_site(user, llm_server)
    last = paths["last"]
    agent = Agent.objects.create(owner=user, name="Travel guide", system_prompt="You plan trips.")
    job = ImportJob.objects.create(owner=user, filename="chats.json", path="/nonexistent/chats.json",
                                   status="failed", error="The file is not an export Arbor knows.")
    pages = {name: path for name, path in paths.items() if isinstance(path, str)}
    audit = audited_run(user)  # a run the worker answered: it has a recorded context
    return pages | {
        "audit": audit, "context": f"/runs/{audit.rstrip('/').rsplit('/', 1)[1]}/context",
        "settings": f"/memory/runs/{last.pk}/settings",
        "memory branch": f"/memory/branch/{last.pk}/", "agents": "/agents/", "agent": f"/agents/{agent.pk}/",
        "suites": "/compare/suites/", "import job": f"/archive/jobs/{job.pk}/",
        "audit log": "/admin/audit/auditlog/", "admin": "/admin/",
    }


def open_every_menu(page, viewport) -> int:
    """Open every disclosure of the page and, on a phone, the site menu and the sessions drawer
    (see :data:`OPEN_DISCLOSURES`); how many were opened. Pop-up menus: :func:`each_menu`."""
    opened = page.evaluate(OPEN_DISCLOSURES)
    if viewport == PHONE:
        for toggle in (".menu-toggle", ".drawer-toggle"):
            if page.locator(toggle).first.is_visible():
                page.locator(toggle).first.click()
                opened += 1
    page.wait_for_timeout(300)  # transitions (the drawer slides in)
    return opened


def axe_whole_page(page, viewport) -> list[dict]:
    """axe on the whole page at once: the viewport as tall as the page (at ``viewport``'s width), so
    no target counts as "obscured" only because this scroll position puts it under the sticky top
    bar or composer (a target that straddles their edge at one scroll position and not at the next);
    overlaps that are really there (a menu over a form) are still found."""
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": viewport[0], "height": min(max(height, viewport[1]), 8000)})
    page.wait_for_timeout(100)
    try:
        return axe(page)
    finally:
        page.set_viewport_size({"width": viewport[0], "height": viewport[1]})


def each_menu(page, url: str):
    """Open the page's pop-up menus one kind at a time on the page as loaded (the last of each
    kind, its forms open: as a user has it); yields each kind while it is open."""
    for kind in page.evaluate(MENU_KINDS):
        page.goto(url)
        settle(page)
        assert page.evaluate(OPEN_MENU, kind), kind
        page.wait_for_timeout(150)
        yield kind


def test_no_console_error_or_warning_on_any_main_page_with_every_menu_open(new_page, asgi_server, celery_worker,
                                                                          llm_server):
    user = _staff_user()
    pages = every_page(user, llm_server)
    heard: dict[tuple, list[str]] = {}
    for viewport in (DESKTOP, PHONE):
        page = new_page(viewport)
        messages: list[str] = []
        page.on("console", lambda m, out=messages: out.append(f"{m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e, out=messages: out.append(f"pageerror: {e}"))
        missing: list[str] = []
        page.on("response", lambda r, out=missing: out.append(r.url) if r.status >= 400 else None)
        login(page, asgi_server, user)
        for name, path in pages.items():
            since = len(messages)
            response = page.goto(asgi_server + path)
            assert response.status == 200, (name, response.status)
            page.wait_for_load_state("networkidle")
            open_every_menu(page, viewport)
            for _kind in each_menu(page, asgi_server + path):
                page.wait_for_load_state("networkidle")
            heard[(name, viewport[0])] = messages[since:]
        assert missing == [], missing
        page.evaluate("console.warn('probe')")  # the listener hears a warning
        page.wait_for_timeout(200)
        assert messages[-1:] == ["warning: probe"], messages[-3:]
        page.context.close()
    print({k: v for k, v in heard.items() if v} or f"console: silent on {len(heard)} page loads")
    assert {k: v for k, v in heard.items() if v} == {}
    assert len(heard) == 2 * len(pages) >= 2 * 26


def test_axe_finds_nothing_serious_on_any_main_page_with_every_menu_open(new_page, asgi_server, celery_worker,
                                                                        llm_server, artifacts):
    user = _staff_user()
    pages = every_page(user, llm_server)
    found: dict[tuple, list] = {}
    opened: dict[str, int] = {}
    for theme in ("light", "dark"):
        for viewport in (DESKTOP, PHONE):
            page = new_page(viewport, color_scheme=theme, bypass_csp=True)
            login(page, asgi_server, user)
            for name, path in pages.items():
                assert page.goto(asgi_server + path).status == 200, name
                settle(page)
                opened[name] = open_every_menu(page, viewport)
                found[(name, theme, viewport[0])] = axe_whole_page(page, viewport)
                for kind in each_menu(page, asgi_server + path):
                    opened[name] += 1
                    found[(f"{name} + {kind}", theme, viewport[0])] = axe(page)
                    if name == "chat":
                        page.screenshot(path=str(artifacts / f"menus-open-chat-{kind}-{viewport[0]}-{theme}"
                                                              ".png"))
            page.context.close()
    report = [f"{name} {theme} {width}: {v['impact']} {v['id']} ×{v['count']} {v['nodes']}"
              for (name, theme, width), violations in sorted(found.items()) for v in violations]
    print(f"menus opened per page: {opened}")
    print("\n".join(report) or "axe: no violations at all")
    assert opened["chat"] >= 5 and opened["tree"] >= 1  # the menus exist and were opened
    serious = [line for line in report if " serious " in line or " critical " in line]
    assert not serious, "\n".join(serious)
    assert len([key for key in found if "+" not in key[0]]) == 4 * len(pages)
    assert {key[0] for key in found} >= {"chat + more-tools", "chat + exports"}
