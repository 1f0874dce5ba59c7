"""The HTML pages through Django's test client: what they show, what actions write, who may see
them, and query counts that do not grow with depth or run count."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Profile
from conversations.models import Message, Run, RunStatus, Session
from tests.support.factories import AgentFactory, RunFactory, SessionFactory, UserFactory, build_chain

pytestmark = pytest.mark.django_db


@pytest.fixture
def me(client):
    user = UserFactory()
    client.force_login(user)
    return user


def _count_queries(client, url) -> tuple[int, bytes]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content[:2000]
    return len(queries), response.content


def _bushy(session: Session, depth: int, every: int = 7) -> list[Run]:
    """A chain of ``depth`` runs with a sibling (a regenerated answer) every ``every`` runs."""
    runs = build_chain(session, depth)
    for run in runs[1::every]:
        RunFactory(session=session, parent_run=run.parent_run)
    return runs


# --- the chat -------------------------------------------------------------------------------------

def test_chat_query_count_does_not_grow_with_depth(client, me):
    """The chat page costs the same number of queries at depth 12 and depth 400 with siblings."""
    shallow, deep = SessionFactory(owner=me), SessionFactory(owner=me)
    _bushy(shallow, 12)
    _bushy(deep, 400)
    n_shallow, _ = _count_queries(client, f"/s/{shallow.pk}/")
    n_deep, html = _count_queries(client, f"/s/{deep.pk}/")
    assert n_shallow == n_deep
    # session, path window, siblings, totals, agents, the picker's models of the user's connections, fork
    # source, compactions; meter: last model call, branch compactions; branch tools: the session's
    # labels, its undoable prunes; branch points panel: the path's branch points, their excerpts; the
    # sessions sidebar; the user's colour theme (plus the login session and user)
    assert n_deep <= 17


def test_chat_shows_the_newest_turns_first_and_loads_older_ones(client, me):
    """A 300-turn branch renders its newest 30 turns and a real link to the turns above them."""
    session = SessionFactory(owner=me)
    runs = build_chain(session, 300)
    html = client.get(f"/s/{session.pk}/").content.decode()
    assert "answer 299" in html and "answer 270" in html and "answer 269" not in html
    older = re.search(r'href="(/s/[^"]+/older\?before=[^"]+)"', html).group(1)
    assert older.endswith(str(runs[270].pk))
    page = client.get(older).content.decode()
    assert "answer 269" in page and "answer 240" in page and "answer 239" not in page and "answer 270" not in page
    partial = client.get(older, headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in partial and "answer 240" in partial
    assert str(runs[240].pk) in re.search(r'before=([0-9a-f-]+)', partial).group(1)


def test_chat_query_count_of_older_turns_is_constant(client, me):
    session = SessionFactory(owner=me)
    runs = _bushy(session, 500)
    n_near, _ = _count_queries(client, f"/s/{session.pk}/older?before={runs[480].pk}")
    n_far, _ = _count_queries(client, f"/s/{session.pk}/older?before={runs[40].pk}")
    assert n_near == n_far


def test_chat_html_stays_small_on_a_deep_branch(client, me):
    """1,000 turns deep: the page stays far under 2 MB because only the newest turns are sent."""
    session = SessionFactory(owner=me)
    build_chain(session, 1000)
    html = client.get(f"/s/{session.pk}/").content
    assert len(html) < 300_000


def test_markdown_is_rendered_and_sanitised(client, me):
    session = SessionFactory(owner=me)
    RunFactory(session=session,
               turn=("<script>alert(1)</script> **bold**", "```python\nx = 1\n```\n[x](javascript:alert(1))"))
    session.active_run = session.runs.get()
    session.save()
    html = client.get(f"/s/{session.pk}/").content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "<strong>bold</strong>" in html
    assert 'class="n">x</span>' in html  # Pygments highlighted the code block
    assert "href=\"javascript" not in html


def test_sibling_navigator_switches_and_remembers_the_branch(client, me):
    """Edit makes a sibling shown as 2/2; opening the first sibling stores it as the active branch."""
    session = SessionFactory(owner=me)
    first = RunFactory(session=session, turn=("hello", "hi"))
    child = RunFactory(session=session, parent_run=first, turn=("more", "sure"))
    session.active_run = child
    session.save()
    response = client.post(f"/s/{session.pk}/runs/{child.pk}/edit", {"input": "edited"})
    assert response.status_code == 302
    edited = Run.objects.exclude(pk__in=[first.pk, child.pk]).get()
    assert edited.parent_run_id == first.pk and edited.status == RunStatus.QUEUED
    html = client.get(f"/s/{session.pk}/").content.decode()
    assert "2/2" in html and "edited" in html
    prev = re.search(r'<form method="post" action="([^"]+)" class="inline sib-form">', html).group(1)
    assert prev.endswith(f"/runs/{child.pk}/open") and 'class="sib prev" hx-post="' + prev in html
    assert client.get(prev).status_code == 405  # a GET (a link, an image) changes nothing
    session.refresh_from_db()
    assert session.active_run_id == edited.pk
    response = client.post(prev)
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.active_run_id == child.pk  # remembered in the database, for every device
    html = client.get(f"/s/{session.pk}/").content.decode()
    assert "1/2" in html and "sure" in html


def test_finished_turn_partial_updates_the_branch_facts(client, me):
    """The partial swapped in when a reply is done carries the branch's new totals out of band."""
    session = SessionFactory(owner=me)
    runs = build_chain(session, 3)
    Run.objects.filter(pk__in=[r.pk for r in runs]).update(prompt_tokens=10, completion_tokens=5)
    html = client.get(f"/s/{session.pk}/runs/{runs[-1].pk}/", headers={"HX-Request": "true"}).content.decode()
    assert f'id="turn-{runs[-1].pk}"' in html
    assert 'id="branch-facts"' in html and 'hx-swap-oob="true"' in html and "45 tokens used" in html
    html = client.get(f"/s/{session.pk}/runs/{runs[0].pk}/", headers={"HX-Request": "true"}).content.decode()
    assert "hx-swap-oob" not in html  # not the end of the branch: nothing else to update


def test_regenerate_and_rewind(client, me):
    session = SessionFactory(owner=me)
    runs = build_chain(session, 5)
    client.post(f"/s/{session.pk}/runs/{runs[4].pk}/regenerate")
    sibling = Run.objects.get(parent_run=runs[3], session=session, status=RunStatus.QUEUED)
    assert Message.objects.get(run=sibling, position=0).content == "question 4"
    client.post(f"/s/{session.pk}/runs/{runs[1].pk}/rewind")
    session.refresh_from_db()
    assert session.active_run_id == runs[1].pk
    html = client.get(f"/s/{session.pk}/").content.decode()
    assert "answer 1" in html and "answer 2" not in html


def test_fork_shows_shared_turns_read_only(client, me):
    session = SessionFactory(owner=me, title="Source")
    runs = build_chain(session, 4)
    response = client.post(f"/s/{session.pk}/runs/{runs[2].pk}/fork")
    fork = Session.objects.exclude(pk=session.pk).get()
    assert response["Location"] == f"/s/{fork.pk}/"
    html = client.get(f"/s/{fork.pk}/").content.decode()
    assert html.count("shared · read-only") == 3
    assert f'href="/s/{session.pk}/"' in html  # links back to the source session
    assert f"/runs/{runs[2].pk}/edit" not in html and f"/runs/{runs[2].pk}/regenerate" not in html
    tree = client.get(f"/s/{fork.pk}/tree/").content.decode()
    assert tree.count("node st-succeeded on-path shared") + tree.count("node st-succeeded on-path active shared") == 3


def test_agent_picker_lists_own_and_shared_agents_only(client, me):
    session = SessionFactory(owner=me)
    mine = AgentFactory(owner=me, name="Mine", memory_id="m1")
    shared = AgentFactory(owner=None, name="Everyone", memory_id="e1")
    theirs = AgentFactory(owner=UserFactory(), name="Theirs", memory_id="t1")
    html = client.get(f"/s/{session.pk}/").content.decode()
    assert 'name="agent_id"' in html and ">Mine<" in html and ">Everyone<" in html and "Theirs" not in html
    response = client.post(f"/s/{session.pk}/runs", {"input": "hi", "agent_id": theirs.pk},
                           headers={"HX-Request": "true"})
    assert response.status_code == 400 and not Run.objects.exists()
    client.post(f"/s/{session.pk}/runs", {"input": "hi", "agent_id": mine.pk})
    run = Run.objects.get()
    assert run.agent_id == mine.pk and run.memory_id == "m1"
    assert shared.pk  # listed above


def test_refused_input_is_a_clear_4xx_and_writes_nothing(client, me):
    session = SessionFactory(owner=me)
    response = client.post(f"/s/{session.pk}/runs", {"input": "   "}, headers={"HX-Request": "true"})
    assert response.status_code == 400 and b"empty" in response.content
    assert not Run.objects.exists()


# --- the tree view --------------------------------------------------------------------------------

def test_tree_query_count_does_not_grow_with_run_count(client, me):
    small, big = SessionFactory(owner=me), SessionFactory(owner=me)
    _bushy(small, 10)
    _bushy(big, 600, every=3)
    n_small, _ = _count_queries(client, f"/s/{small.pk}/tree/")
    n_big, html = _count_queries(client, f"/s/{big.pk}/tree/")
    assert n_small == n_big
    assert n_big <= 9  # with the branch labels the map writes beside its nodes and its provenance edges


def test_tree_highlights_the_active_path_and_elides_long_lines(client, me):
    session = SessionFactory(owner=me)
    runs = build_chain(session, 200)
    side = RunFactory(session=session, parent_run=runs[99], turn=("a side question", "ok"))
    html = client.get(f"/s/{session.pk}/tree/").content.decode()
    assert html.count('aria-current="true"') == 1
    assert re.search(rf'action="[^"]*/runs/{runs[-1].pk}/open" class="inline">[^<]*<input type="hidden" '
                     rf'name="csrfmiddlewaretoken" value="[^"]+"><button type="submit" class="link node-label" '
                     rf'aria-current="true">', html)
    assert "a side question" in html and f"/runs/{side.pk}/open" in html
    assert "question 50" not in html  # the middle of a straight line is elided ...
    chain = re.search(r'href="([^"]+\?chain=[^"]+)"', html).group(1).replace("&amp;", "&")
    part = client.get(chain, headers={"HX-Request": "true"}).content.decode()
    assert "question 50" in part and "<html" not in part  # ... and loads on demand
    assert client.get(chain).content.decode().count("<html") == 1  # a page of its own without JS


def test_tree_lazy_loads_subtrees_past_the_budget(client, me):
    """400 side branches: the page shows a budget of them and 'more' links load the rest."""
    session = SessionFactory(owner=me)
    runs = build_chain(session, 3)
    for i in range(400):
        RunFactory(session=session, parent_run=runs[0], turn=(f"branch {i}", "x"))
    session.active_run = runs[-1]
    session.save()
    html = client.get(f"/s/{session.pk}/tree/").content.decode()
    more = re.findall(r'href="([^"]+\?root=[^"]+)"', html)
    assert more, "branches past the budget are links"
    part = client.get(more[-1], headers={"HX-Request": "true"}).content.decode()
    assert 'class="branch' in part and "/open" in part


def test_clicking_a_tree_node_opens_its_branch(client, me):
    session = SessionFactory(owner=me)
    runs = build_chain(session, 4)
    other = RunFactory(session=session, parent_run=runs[1], turn=("other way", "fine"))
    deeper = RunFactory(session=session, parent_run=other, turn=("deeper", "yes"))
    session.active_run = runs[-1]
    session.save()
    client.get(f"/s/{session.pk}/runs/{other.pk}/open")
    session.refresh_from_db()
    assert session.active_run_id == runs[-1].pk  # a GET changes nothing
    client.post(f"/s/{session.pk}/runs/{other.pk}/open")
    session.refresh_from_db()
    assert session.active_run_id == deeper.pk  # the newest run below the clicked one


# --- the sessions list ----------------------------------------------------------------------------

def test_sessions_list_counts_runs_and_branches_in_constant_queries(client, me):
    for n in range(3):
        session = SessionFactory(owner=me)
        _bushy(session, 10 * (n + 1))
    n_few, html = _count_queries(client, "/")
    for _ in range(20):
        _bushy(SessionFactory(owner=me), 5)
    n_many, _ = _count_queries(client, "/")
    assert n_few == n_many
    session = Session.objects.filter(owner=me).order_by("created_at").first()
    runs = session.runs.count()
    html = client.get("/").content.decode()
    assert runs == 12 and "12 runs · 3 branches" in html  # a chain of 10 and two regenerated siblings


def test_search_finds_titles_and_message_text(client, me):
    a = SessionFactory(owner=me, title="Holiday plans")
    b = SessionFactory(owner=me, title="Misc")
    RunFactory(session=b, turn=("How do penguins sleep?", "Standing up, mostly."))
    SessionFactory(owner=UserFactory(), title="Penguins of someone else")
    html = client.get("/?q=penguins").content.decode()
    assert "Misc" in html and "Holiday" not in html and "someone else" not in html
    html = client.get("/?q=holiday").content.decode()
    assert "Holiday plans" in html and "Misc" not in html
    partial = client.get("/?q=holiday", headers={"HX-Request": "true", "HX-Target": "results"}).content.decode()
    assert "<html" not in partial and "Holiday plans" in partial
    assert a.pk


def test_rename_delete_and_undo(client, me, settings):
    session = SessionFactory(owner=me, title="Old")
    response = client.post(f"/s/{session.pk}/rename", {"title": "New name"}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and b"New name" in response.content
    assert client.post(f"/s/{session.pk}/rename", {"title": " "}, headers={"HX-Request": "true"}).status_code == 400
    session.refresh_from_db()
    assert session.title == "New name"
    client.post(f"/s/{session.pk}/delete")
    assert client.get(f"/s/{session.pk}/").status_code == 404
    html = client.get("/").content.decode()
    assert "Recently deleted" in html and f"/s/{session.pk}/restore" in html
    client.post(f"/s/{session.pk}/restore")
    assert client.get(f"/s/{session.pk}/").status_code == 200
    client.post(f"/s/{session.pk}/delete")
    Session.objects.filter(pk=session.pk).update(
        deleted_at=timezone.now() - timedelta(seconds=settings.ARBOR_UNDO_DELETE_SECONDS + 1))
    assert client.post(f"/s/{session.pk}/restore").status_code == 404  # the undo time has passed
    assert "Recently deleted" not in client.get("/").content.decode()


# --- permissions ----------------------------------------------------------------------------------

def test_another_user_gets_404_everywhere(client):
    owner = UserFactory()
    session = SessionFactory(owner=owner)
    runs = build_chain(session, 3)
    run = runs[1]
    client.force_login(UserFactory())
    base = f"/s/{session.pk}"
    for url in [f"{base}/", f"{base}/tree/", f"{base}/older?before={run.pk}", f"{base}/runs/{run.pk}/",
                f"{base}/runs/{run.pk}/stream"]:
        assert client.get(url).status_code == 404, url
    for url in [f"{base}/runs/{run.pk}/open", f"{base}/runs",
                f"{base}/rename", f"{base}/delete", f"{base}/restore", f"{base}/runs/{run.pk}/edit",
                f"{base}/runs/{run.pk}/regenerate", f"{base}/runs/{run.pk}/rewind", f"{base}/runs/{run.pk}/fork",
                f"{base}/runs/{run.pk}/cancel"]:
        assert client.post(url, {"input": "x", "title": "x"}).status_code == 404, url
    session.refresh_from_db()
    assert session.title != "x" and session.deleted_at is None and session.active_run_id == runs[-1].pk
    assert Run.objects.count() == 3 and Session.objects.count() == 1


def test_a_run_of_another_session_is_404_under_this_session(client, me):
    mine, other = SessionFactory(owner=me), SessionFactory(owner=me)
    build_chain(mine, 2)
    foreign = build_chain(other, 2)[0]
    assert client.post(f"/s/{mine.pk}/runs/{foreign.pk}/open").status_code == 404
    assert client.post(f"/s/{mine.pk}/runs/{foreign.pk}/rewind").status_code == 404


def test_malformed_ids_are_404(client, me):
    """Ids in paths are <uuid:…> (no view runs for a malformed one); ids in query strings are looked
    up by the selectors, whose NotFound is the 404 page too."""
    session = SessionFactory(owner=me)
    build_chain(session, 2)
    base = f"/s/{session.pk}"
    assert client.post(f"{base}/runs/not-a-uuid/open").status_code == 404
    for url in ["/s/not-a-uuid/", f"{base}/runs/123/", f"{base}/older?before=nope",
                f"{base}/tree/?root=nope", f"{base}/tree/?chain=nope", "/audit/runs/not-a-uuid/"]:
        assert client.get(url).status_code == 404, url
    assert client.post("/s/not-a-uuid/rename", {"title": "x"}).status_code == 404
    assert client.get(f"{base}/?at=nope").status_code == 200  # a bad anchor only loses the anchor


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    session = SessionFactory()
    response = client.get(f"/s/{session.pk}/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_encryption_at_rest_degrades_search_and_previews_clearly(client, me, settings):
    """With message text encrypted, the sessions search says it looks at titles only (no error
    page) and the tree shows decrypted previews, not ciphertext."""
    from cryptography.fernet import Fernet

    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    session = SessionFactory(owner=me, title="Holiday plans")
    RunFactory(session=session, turn=("secret words about Lisbon", "noted"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM conversations_message WHERE position = 0")
        assert cursor.fetchone()[0].startswith("enc:")  # really encrypted in the database
    client.force_login(me)
    response = client.get("/", {"q": "Lisbon"})
    assert response.status_code == 200
    assert "titles only" in response.content.decode()
    assert client.get("/", {"q": "Holiday"}).content.decode().count("Holiday plans") >= 1
    from django.urls import reverse

    tree = client.get(reverse("conversations:session_tree", args=[session.pk])).content.decode()
    assert "secret words about Lisbon" in tree and "enc:v1" not in tree
    assert Message.objects.get(position=0).content == "secret words about Lisbon"


def test_first_message_names_the_session_and_the_htmx_answer_refreshes_the_heading(client, me,
                                                                                   django_capture_on_commit_callbacks):
    """An untitled session takes its title from the first message; the htmx response carries the
    new heading out of band, so it changes without a reload."""
    session = SessionFactory(owner=me, title="")
    client.force_login(me)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(f"/s/{session.pk}/runs", {"input": "Plan a trip to Porto"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="session-title" hx-swap-oob="true">Plan a trip to Porto</h1>' in html
    assert Session.objects.get(pk=session.pk).title == "Plan a trip to Porto"


# --- issue 16: theme, sidebar, composer, what htmx answers say -----------------------------------

def test_theme_is_remembered_per_user_and_rendered_on_html(client, me):
    html = client.get("/").content.decode()
    assert "<html lang=\"en\">" in html  # "system": no data-theme, the CSS follows prefers-color-scheme
    assert client.post("/accounts/theme", {"theme": "dark"}, HTTP_X_REQUESTED_WITH="fetch").status_code == 204
    assert Profile.objects.get(user=me).theme == "dark"
    assert '<html lang="en" data-theme="dark">' in client.get("/").content.decode()
    response = client.post("/accounts/theme", {"theme": "purple"}, HTTP_X_REQUESTED_WITH="fetch")
    assert response.status_code == 400 and b"theme must be" in response.content
    assert Profile.objects.get(user=me).theme == "dark"
    response = client.post("/accounts/theme", {"theme": "light", "next": "/compare/"})  # without JavaScript
    assert response.status_code == 302 and response["Location"] == "/compare/"
    response = client.post("/accounts/theme", {"theme": "system", "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert Profile.objects.get(user=me).theme == "system"
    assert client.get("/accounts/theme").status_code == 405
    other = UserFactory()
    client.force_login(other)
    assert 'data-theme="' not in client.get("/").content.decode()  # another user's choice is theirs


def test_theme_needs_a_login(client):
    response = client.post("/accounts/theme", {"theme": "dark"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_chat_has_the_sessions_sidebar_newest_first_with_the_current_one_marked(client, me):
    now = timezone.now()
    older = SessionFactory(owner=me, title="Older one")
    current = SessionFactory(owner=me, title="Current one")
    SessionFactory(owner=UserFactory(), title="Someone else's")
    Session.objects.filter(pk=older.pk).update(updated_at=now - timedelta(hours=1))
    html = client.get(f"/s/{current.pk}/").content.decode()
    side = html[html.index('id="sessions"'):]
    assert side.index("Current one") < side.index("Older one") and "Someone else" not in side
    assert re.search(rf'href="/s/{current.pk}/" data-title-of="{current.pk}" aria-current="page"', html)
    partial = client.get("/", {"q": "older", "current": str(current.pk)},
                         headers={"HX-Request": "true", "HX-Target": "side-results"}).content.decode()
    assert "<html" not in partial and "Older one" in partial and "Current one" not in partial
    assert "1 match" in partial


def test_sidebar_rename_delete_restore_answer_with_rows_and_focus(client, me):
    session = SessionFactory(owner=me, title="Before")
    hx = {"HX-Request": "true"}
    response = client.post(f"/s/{session.pk}/rename", {"title": "After", "place": "sidebar",
                                                       "current": str(session.pk)}, headers=hx)
    html = response.content.decode()
    assert html.lstrip().startswith(f'<li class="srow current" id="srow-{session.pk}"')
    after = json.loads(response["HX-Trigger-After-Settle"])["arbor:after"]
    assert after["renamed"] == {"id": str(session.pk), "title": "After"} and "Renamed" in after["say"]
    assert after["focus"].startswith(f"#srow-{session.pk} .stitle")
    response = client.post(f"/s/{session.pk}/rename", {"title": "Head", "place": "head"}, headers=hx)
    assert response.status_code == 204
    assert json.loads(response["HX-Trigger"])["arbor:after"]["focus"] == "#session-title"
    response = client.post(f"/s/{session.pk}/delete", {"place": "sidebar"}, headers=hx)
    assert "Deleted “Head”" in response.content.decode() and "Undo" in response.content.decode()
    assert "Undo is possible" in json.loads(response["HX-Trigger-After-Settle"])["arbor:after"]["say"]
    response = client.post(f"/s/{session.pk}/restore", {"place": "sidebar"}, headers=hx)
    assert f'id="srow-{session.pk}"' in response.content.decode()
    assert Session.objects.get(pk=session.pk).deleted_at is None


def test_htmx_actions_say_where_focus_goes(client, me, django_capture_on_commit_callbacks):
    session = SessionFactory(owner=me)
    runs = build_chain(session, 2)
    hx = {"HX-Request": "true"}

    def after(response):
        assert response.status_code == 200, response.content[:500]
        return json.loads(response["HX-Trigger-After-Settle"])["arbor:after"]

    with django_capture_on_commit_callbacks(execute=False):
        sent = after(client.post(f"/s/{session.pk}/runs", {"input": "hello"}, headers=hx))
    assert sent["focus"] == "#id_input" and sent["say"].startswith("Sent.")
    new = Run.objects.filter(session=session).order_by("-created_at").first()
    finish = dict(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    Run.objects.filter(pk=new.pk).update(**finish)
    with django_capture_on_commit_callbacks(execute=False):
        edited = after(client.post(f"/s/{session.pk}/runs/{runs[1].pk}/edit", {"input": "edited"}, headers=hx))
    newest = Run.objects.filter(session=session).order_by("-created_at").first()
    assert edited["focus"] == f"#turn-{newest.pk}" and "Edited turn 2" in edited["say"]
    Run.objects.filter(pk=newest.pk).update(**finish)
    opened = after(client.post(f"/s/{session.pk}/runs/{runs[1].pk}/open", headers=hx))
    assert opened["focus"] == f"#turn-{runs[1].pk}" and "version 1 of 2" in opened["say"]
    rewound = after(client.post(f"/s/{session.pk}/runs/{runs[0].pk}/rewind", headers=hx))
    assert rewound["focus"] == "#id_input" and "up to turn 1" in rewound["say"]
    older = after(client.get(f"/s/{session.pk}/older?before={runs[1].pk}", headers=hx))
    assert older["say"].startswith("Loaded 1 older turn")
    done = after(client.get(f"/s/{session.pk}/runs/{runs[0].pk}/", headers=hx))
    assert done["done"] == str(runs[0].pk) and done["say"] == "The reply is complete."


def test_composer_names_the_answering_model_and_offers_stop_while_a_reply_streams(client, me, settings):
    agent = AgentFactory(owner=me, name="Poet", model="poet-model")
    session = SessionFactory(owner=me, default_agent=agent)
    html = client.get(f"/s/{session.pk}/").content.decode()
    assert 'Answered by <span class="model-name">Default · poet-model</span>' in html  # connection · model
    assert '<option value="" data-model="Default · poet-model">Default</option>' in html
    assert 'class="stop"' not in html and '<button type="submit" class="send">' in html
    plain = SessionFactory(owner=me)
    queued = RunFactory(session=plain, status=RunStatus.QUEUED, finished_at=None, turn=("hi", None))
    Session.objects.filter(pk=plain.pk).update(active_run=queued)
    html = client.get(f"/s/{plain.pk}/").content.decode()
    assert f'Answered by <span class="model-name">Default · {settings.ARBOR_MODEL}</span>' in html
    assert f'formaction="/s/{plain.pk}/runs/{queued.pk}/cancel"' in html  # Stop works without JavaScript too
    assert '<button type="submit" class="send" hidden>' in html
    assert 'data-status="queued"' in html and "waiting for a worker" in html and 'sse-swap="status"' in html
    response = client.post(f"/s/{plain.pk}/runs/{queued.pk}/cancel", {"input": ""})
    assert response.status_code == 302 and Run.objects.get(pk=queued.pk).status == RunStatus.CANCELLED
