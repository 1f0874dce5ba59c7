"""Fan-out, fuse and merge in a real browser (Debian's Chromium via Playwright, Arbor under uvicorn, a
real Celery worker and the scripted model server), at 1280 and 390 px, with axe-core showing no
serious or critical violation on each page used:

- fan out to 3 models from the composer, watch the three answers stream side by side, continue with
  the second, reload: it is still the one shown; fuse the first two, and the fused turn lists both;
- fan-out columns say "writing…" from their first delta on, also after a reload mid-run;
- merge a 20-turn branch as a digest (drafted by a run in the worker, followed, then edited) and as
  3 chosen turns: the next turn's exact context (its audit page and GET /api/runs/{id}/context)
  holds the carried messages, the tree map draws the merge edge, and undo removes it (and is
  refused, with a message, once a turn was added below the merge turn);
- fuse 2 of a turn's 3 versions from its "Fuse answers…" dialog; a pruned source is marked.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.html import escape
from playwright.sync_api import expect

from branches.services import prune_subtree
from conversations.models import BranchLabel, Message, Run, RunStatus, Session
from merges.models import DigestDraft, FanOut, Provenance
from tests.support.factories import AgentFactory, SessionFactory, build_chain
from tests.support.processes import wait_for
from tests.ui.conftest import artifacts, chromium, login, new_page  # noqa: F401 - fixtures
from tests.ui.test_chat_ux import DESKTOP, PHONE, axe, serious

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
VIEWPORTS = [pytest.param(DESKTOP, id="1280"), pytest.param(PHONE, id="390")]



def _user():
    return get_user_model().objects.create_user(f"merge{timezone.now().timestamp():.6f}", password="pw-123456")



def _finished(run_id, timeout=40.0) -> Run:
    return wait_for(lambda: (r := Run.objects.get(pk=run_id)).is_finished and r, timeout,
                    message=f"run {run_id} to finish")


def _open_more(page, run):
    page.locator(f"#turn-{run.pk} details.more-tools > summary").click()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_fan_out_continue_with_the_second_and_fuse(new_page, asgi_server, celery_worker, llm_server,  # noqa: F811
                                                   artifacts, viewport):  # noqa: F811
    user = _user()
    agents = [AgentFactory(owner=user, name=f"Agent {x}", model=f"model-{x}") for x in "abc"]
    session = SessionFactory(owner=user, title="Colours")
    build_chain(session, 1)
    page = new_page(viewport, bypass_csp=True)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    page.locator("details.fan-pick > summary").click()
    for agent in agents:
        page.locator(f".fan-pick input[value='{agent.pk}']").check()
    expect(page.locator(".fan-send")).to_have_text("Ask all 3")
    page.fill("#id_input", "Name a colour [[tokens:60]] [[delay:0.1]]")  # about 6 s of streaming each
    page.locator(".fan-send").click()
    columns = page.locator(".fan-col")
    expect(columns).to_have_count(3)
    for i in range(3):  # every column streams its own answer, and says so on its first delta
        expect(columns.nth(i).locator(".stream-text")).to_contain_text("w3", timeout=20_000)
        assert columns.nth(i).locator(".status-badge").inner_text() == "writing…"  # at once: still streaming
    page.screenshot(path=str(artifacts / f"merges-fan-out-streaming-{viewport[0]}.png"), full_page=True)
    page.reload()  # mid-run: the replayed deltas end "thinking…" as soon as text shows
    first = page.locator(".fan-col").first
    expect(first.locator(".stream-text")).to_contain_text("w1", timeout=20_000)
    if first.locator(".status-badge").count():  # not swapped for the finished column yet
        assert first.locator(".status-badge").inner_text() != "thinking…"
    columns = page.locator(".fan-col")
    runs = list(FanOut.objects.get(session=session).runs.order_by("created_at"))
    assert sorted(r.model for r in runs) == ["model-a", "model-b", "model-c"]
    for run in runs:
        assert _finished(run.pk).status == RunStatus.SUCCEEDED
    expect(page.locator(".fan-col .content.md")).to_have_count(3, timeout=20_000)
    expect(columns.first.locator(".fan-facts")).to_contain_text("first token")
    assert serious(axe(page)) == []
    second = columns.nth(1)
    second.get_by_role("button", name=re.compile("Continue with this one: answer 2")).click()
    expect(page.locator(".fan-col").nth(1)).to_have_class(re.compile(r"\bshown\b"))
    page.reload()
    expect(page.locator(".fan-col").nth(1)).to_have_class(re.compile(r"\bshown\b"))
    assert Session.objects.get(pk=session.pk).active_run_id == runs[1].pk
    page.screenshot(path=str(artifacts / f"merges-fan-out-{viewport[0]}.png"), full_page=True)

    page.locator("details.fuse-tool > summary").click()
    page.locator(f".fuse-tool input[value='{runs[2].pk}']").uncheck()
    page.fill(".fuse-tool textarea[name=instruction]", "Pick the best colour of these.")
    page.get_by_role("button", name="Fuse into a new version").click()
    fused = wait_for(lambda: Provenance.objects.filter(kind="fuse", run__session=session).first(), 20,
                     message="the fused run").run
    assert _finished(fused.pk).status == RunStatus.SUCCEEDED
    assert [s.run_id for s in Provenance.objects.get(run=fused).sources.order_by("position")] == \
        [runs[0].pk, runs[1].pk]
    page.goto(f"{asgi_server}/s/{session.pk}/")
    head = page.locator(f"#turn-{fused.pk} .provenance")
    expect(head).to_contain_text("fused from answer 1, answer 2")
    sent = llm_server.requests[-1]["body"]["messages"][-1]["content"]
    assert sent.startswith("Pick the best colour of these.") and "Answer 2 (Default · model-b)" in sent
    assert serious(axe(page)) == []
    page.screenshot(path=str(artifacts / f"merges-fused-{viewport[0]}.png"), full_page=True)
    assert not page.problems, page.problems


def _merge_in_dialog(page, base, session, target, source, *, digest: str | None = None, turns=()):
    """Open the merge dialog from the target turn's menu, pick ``source``, carry a digest or turns,
    preview and confirm; returns the preview's token count."""
    page.goto(f"{base}/s/{session.pk}/")
    _open_more(page, target)
    page.locator(f"#turn-{target.pk}").get_by_role("link", name="Merge a branch here…").click()
    page.wait_for_url(re.compile(r"/merge"))
    assert serious(axe(page)) == []
    page.select_option("#merge-source", str(source.pk))
    page.get_by_role("button", name="Show its turns").click()
    if digest is not None:
        page.locator("input[name=mode][value=digest]").check()
        page.get_by_role("button", name="Draft a digest").click()
        # a run drafts it in the worker; the dialog follows its stream, then shows it editable
        expect(page.locator("#merge-digest")).to_have_value(re.compile(r"^Echo: "), timeout=30_000)
        expect(page.get_by_role("link", name="its exact context, tokens and latency")).to_be_visible()
        assert serious(axe(page)) == []
        page.fill("#merge-digest", digest)
    else:
        for run in turns:
            page.locator(f".merge-turns input[value='{run.pk}']").check()
    page.get_by_role("button", name="Preview").click()
    tokens = int(page.locator(".preview-tokens").inner_text())
    assert serious(axe(page)) == []
    page.get_by_role("button", name="Confirm the merge").click()
    page.wait_for_url(re.compile(rf"/s/{session.pk}/"))
    return tokens


def _edges(page) -> int:
    """The provenance edges the tree map draws (segments of its dashed paths)."""
    paths = page.locator(".treemap-svg path.prov")
    expect(paths.first).to_be_attached()
    return sum(paths.nth(i).get_attribute("d").count("M") for i in range(paths.count()))


def _next_turn(page, base, session, text) -> Run:
    before = set(Run.objects.filter(session=session).values_list("pk", flat=True))
    page.fill("#id_input", text)
    page.locator("button.send").click()
    run = wait_for(lambda: Run.objects.filter(session=session).exclude(pk__in=before).first(), 20,
                   message="the next turn")
    return _finished(run.pk)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_merge_a_branch_as_digest_and_as_three_turns(new_page, asgi_server, celery_worker, llm_server,  # noqa: F811
                                                     artifacts, viewport):  # noqa: F811
    user = _user()
    session = SessionFactory(owner=user, title="Route planning")
    main = build_chain(session, 3)
    side = build_chain(session, 20, parent=main[0])
    BranchLabel.objects.create(session=session, run=side[-1], name="draft B")
    Session.objects.filter(pk=session.pk).update(active_run=main[-1])
    page = new_page(viewport, bypass_csp=True)
    login(page, asgi_server, user)

    tokens = _merge_in_dialog(page, asgi_server, session, main[-1], side[-1], digest="Draft B chose the coast road.")
    merge = Provenance.objects.get(kind="merge", mode="digest").run
    draft = DigestDraft.objects.get(session=session).run  # the draft was a run of its own, audited
    assert draft.status == RunStatus.SUCCEEDED and draft.session_id != session.pk and draft.prompt_tokens
    expect(page.locator(f"#turn-{merge.pk} .provenance")).to_contain_text("merged from draft B, a digest of turns 2–21")
    nxt = _next_turn(page, asgi_server, session, "So which road?")
    assert nxt.parent_run_id == merge.pk and nxt.status == RunStatus.SUCCEEDED
    carried = "Digest of the branch “draft B” (turns 2–21), merged into this conversation:\n\n" \
              "Draft B chose the coast road."
    context = page.request.get(f"{asgi_server}/api/runs/{nxt.pk}/context").json()
    assert context["verified"] and {"role": "user", "content": carried} in context["messages"]
    assert tokens > 0
    page.goto(f"{asgi_server}/runs/{nxt.pk}/context")
    assert escape("Draft B chose the coast road.") in page.content()
    page.goto(f"{asgi_server}/s/{session.pk}/tree/")
    expect(page.locator(".treemap-svg path.prov")).to_have_count(1)
    page.screenshot(path=str(artifacts / f"merges-map-{viewport[0]}.png"), full_page=True)
    assert serious(axe(page)) == []

    page.goto(f"{asgi_server}/s/{session.pk}/?at={merge.pk}")
    page.locator(f"#turn-{merge.pk}").get_by_role("button", name="Undo merge").click()  # a turn hangs below it
    expect(page.get_by_text("The merge can no longer be undone: 1 turn was added below it")).to_be_visible()
    expect(page.locator(f"#turn-{merge.pk}")).to_have_count(1)

    _merge_in_dialog(page, asgi_server, session, main[-1], side[-1], turns=[side[0]])
    quick = Provenance.objects.get(kind="merge", mode="turns").run
    page.goto(f"{asgi_server}/s/{session.pk}/tree/")
    assert _edges(page) == 2  # the map draws one dashed path per kind, a segment ("M…L…") per edge
    page.goto(f"{asgi_server}/s/{session.pk}/")
    page.locator(f"#turn-{quick.pk}").get_by_role("button", name="Undo merge").click()
    page.wait_for_url(re.compile(rf"/s/{session.pk}/"))
    expect(page.locator(f"#turn-{quick.pk}")).to_have_count(0)
    assert Session.objects.get(pk=session.pk).active_run_id == main[-1].pk
    page.goto(f"{asgi_server}/s/{session.pk}/tree/")
    assert _edges(page) == 1

    chosen = [side[3], side[9], side[16]]
    _merge_in_dialog(page, asgi_server, session, main[-1], side[-1], turns=chosen)
    merge = Provenance.objects.get(kind="merge", mode="turns", run__pruned_by__isnull=True).run
    expect(page.locator(f"#turn-{merge.pk} .provenance")).to_contain_text("merged from draft B, turns 5, 11, 18")
    assert serious(axe(page)) == []
    page.screenshot(path=str(artifacts / f"merges-merged-turns-{viewport[0]}.png"), full_page=True)
    nxt = _next_turn(page, asgi_server, session, "And now?")
    context = page.request.get(f"{asgi_server}/api/runs/{nxt.pk}/context").json()
    contents = [m["content"] for m in context["messages"]]
    assert context["verified"]
    assert contents[-7:-1] == ["question 4", "answer 4", "question 10", "answer 10", "question 17", "answer 17"]
    page.goto(f"{asgi_server}/runs/{nxt.pk}/context")
    assert all(text in page.content() for text in ("question 10", "answer 17"))
    assert not page.problems, page.problems


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_fuse_versions_of_a_turn_from_its_dialog(new_page, asgi_server, celery_worker, llm_server,  # noqa: F811
                                                 artifacts, viewport):  # noqa: F811
    user = _user()
    writer = AgentFactory(owner=user, name="Editor", model="model-editor")
    session = SessionFactory(owner=user, title="Versions")
    main = build_chain(session, 2)
    versions = [main[1]] + [build_chain(session, 1, parent=main[0])[0] for _ in range(2)]
    for k, run in enumerate(versions, start=1):
        Message.objects.filter(run=run, role="assistant").update(content=f"answer of version {k}")
    Session.objects.filter(pk=session.pk).update(active_run=main[1])
    page = new_page(viewport, bypass_csp=True)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    _open_more(page, main[1])
    page.locator(f"#turn-{main[1].pk}").get_by_role("link", name="Fuse answers…").click()
    page.wait_for_url(re.compile(r"/fuse/dialog"))
    expect(page.locator(".fuse-source")).to_have_count(3)
    assert serious(axe(page)) == []
    page.screenshot(path=str(artifacts / f"merges-fuse-dialog-{viewport[0]}.png"), full_page=True)
    page.get_by_label(re.compile("Version 1 ")).check()
    page.get_by_label(re.compile("Version 3 ")).check()
    page.select_option("#fuse-agent", str(writer.pk))
    page.fill("#fuse-instruction", "Keep the best of both versions.")
    page.get_by_role("button", name="Fuse into a new version").click()
    page.wait_for_url(re.compile(rf"/s/{session.pk}/"))
    fused = wait_for(lambda: Provenance.objects.filter(kind="fuse", run__session=session).first(), 20,
                     message="the fused run").run
    assert _finished(fused.pk).status == RunStatus.SUCCEEDED and fused.parent_run_id == main[0].pk
    assert fused.agent_id == writer.pk and fused.model == "model-editor"
    assert [s.run_id for s in Provenance.objects.get(run=fused).sources.order_by("position")] == \
        [versions[0].pk, versions[2].pk]
    sent = llm_server.requests[-1]["body"]["messages"][-1]["content"]
    assert sent.startswith("Keep the best of both versions.") and "answer of version 3" in sent
    assert "answer of version 2" not in sent
    page.goto(f"{asgi_server}/s/{session.pk}/?at={fused.pk}")
    head = page.locator(f"#turn-{fused.pk} .provenance")
    expect(head).to_contain_text("fused from answer 1, answer 2")
    expect(page.locator(f"#turn-{fused.pk} .sib-pos")).to_have_text("4/4")
    assert serious(axe(page)) == []

    prune_subtree(session=Session.objects.get(pk=session.pk), run=versions[2])  # a source goes
    page.reload()
    expect(head).to_contain_text("fused from answer 1, answer 2 (pruned)")
    assert serious(axe(page)) == []
    page.screenshot(path=str(artifacts / f"merges-fuse-versions-{viewport[0]}.png"), full_page=True)
    assert not page.problems, page.problems
