"""Pages: blind mode never leaks a label before the vote, ownership (404), the start form, voting,
continuing a branch, results with filters, CSV and JSON export."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from comparisons import advance, services
from comparisons.models import Comparison, Mode, VariantRun, Vote
from comparisons.services import VariantSpec
from conversations.models import Run, Session
from tests.comparisons.conftest import finish_run

pytestmark = pytest.mark.django_db

SECRETS = {
    "labels": ["Zanzibar-Owl", "Quetzal-Moth"],
    "models": ["mdl-quokka-9", "mdl-narwhal-3"],
    "systems": ["SYS-PELICAN-PROMPT", "SYS-WOMBAT-PROMPT"],
}


def blind_comparison(user, session, branch_point, *, seed=0, **kwargs):
    specs = [VariantSpec(label=SECRETS["labels"][i], model=SECRETS["models"][i], system_prompt=SECRETS["systems"][i],
                         params={"temperature": 0.3 + i}) for i in range(2)]
    return services.comparison_start(owner=user, session=session, branch_point=branch_point, variants=specs,
                                     prompt="Tell me a fact", blind=True, rng=random.Random(seed), **kwargs)


def finish_all(comparison, text="a neutral answer"):
    for vr in VariantRun.objects.filter(variant__comparison=comparison).select_related("run"):
        if not vr.run.is_finished:
            finish_run(vr.run, text=text)


def assert_no_secret(html: str):
    lowered = html.lower()
    for group, values in SECRETS.items():
        for value in values:
            assert value.lower() not in lowered, f"{group} {value!r} leaked into the page"
    assert " · compare " not in html  # the agents' names


def pages_of(client, comparison):
    """Every page and partial of a comparison, full and as HTMX requests."""
    urls = [reverse("comparisons:detail", args=[comparison.pk]), reverse("comparisons:index")]
    for turn in range(comparison.turn_count):
        urls.append(reverse("comparisons:vote", args=[comparison.pk, turn]))
        for column in range(len(comparison.column_order)):
            urls.append(reverse("comparisons:cell", args=[comparison.pk, turn, column]))
    for url in urls:
        for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
            response = client.get(url, **headers)
            assert response.status_code == 200, url
            yield url, response.content.decode()


def test_blind_mode_never_shows_a_label_before_the_vote(client, user, chain):
    """Before the vote no page or partial of a blind comparison contains a label, model, system
    prompt or agent name (not in text, attributes, comments or ids) — queued, and finished."""
    session, runs = chain
    client.force_login(user)
    comparison = blind_comparison(user, session, runs[2])
    seen = 0
    for _, html in pages_of(client, comparison):  # queued: streaming cells
        assert_no_secret(html)
        seen += 1
    finish_all(comparison)
    for _, html in pages_of(client, comparison):  # finished: answers, metrics, vote form
        assert_no_secret(html)
        seen += 1
    assert seen == 2 * 2 * 5
    detail = client.get(reverse("comparisons:detail", args=[comparison.pk])).content.decode()
    assert "Response A" in detail and "Response B" in detail and 'value="a_better"' in detail

    response = client.post(reverse("comparisons:vote", args=[comparison.pk, 0]), {"choice": "b_better", "note": "nice"})
    assert response.status_code == 302
    revealed = client.get(reverse("comparisons:detail", args=[comparison.pk])).content.decode()
    for value in SECRETS["labels"] + SECRETS["models"] + SECRETS["systems"]:
        assert value in revealed
    # B (the right column) won: the vote names it with its label now.
    right_label = SECRETS["labels"][comparison.column_order[1]]
    assert f"#1 B ({right_label})" in revealed


def test_blind_columns_follow_the_shuffle(client, user, chain):
    """The column shown first is the variant the shuffle put first (checked through the answers)."""
    session, runs = chain
    client.force_login(user)
    for seed in range(4):
        comparison = blind_comparison(user, session, runs[2], seed=seed)
        for vr in VariantRun.objects.filter(variant__comparison=comparison).select_related("variant", "run"):
            finish_run(vr.run, text=f"ANSWER-OF-POSITION-{vr.variant.position}")
        html = client.get(reverse("comparisons:detail", args=[comparison.pk])).content.decode()
        first, second = (f"ANSWER-OF-POSITION-{p}" for p in comparison.column_order)
        assert html.index(first) < html.index(second)


def test_other_users_get_404_everywhere(client, user, other_user, chain):
    session, runs = chain
    comparison = blind_comparison(user, session, runs[2])
    finish_all(comparison)
    client.force_login(other_user)
    pk = comparison.pk
    gets = [
        reverse("comparisons:detail", args=[pk]),
        reverse("comparisons:cell", args=[pk, 0, 0]),
        reverse("comparisons:vote", args=[pk, 0]),
        reverse("comparisons:new", args=[session.pk, runs[2].pk]),
    ]
    posts = [
        reverse("comparisons:vote", args=[pk, 0]),
        reverse("comparisons:open_branch", args=[pk, 0]),
        reverse("comparisons:resume", args=[pk]),
        reverse("comparisons:reveal", args=[pk]),
        reverse("comparisons:new", args=[session.pk, runs[2].pk]),
    ]
    for url in gets:
        assert client.get(url).status_code == 404, url
    for url in posts:
        assert client.post(url, {"choice": "tie"}).status_code == 404, url
    assert not Vote.objects.exists()
    comparison.refresh_from_db()
    assert comparison.revealed_at is None
    body = client.get(reverse("comparisons:results_json")).json()
    assert body["comparisons"] == 0 and body["configurations"] == []
    # A run of another user's session under the caller's own session id is 404 too.
    own = Session.objects.create(owner=other_user, title="mine")
    assert client.get(reverse("comparisons:new", args=[own.pk, runs[2].pk])).status_code == 404


def test_bad_ids_are_404(client, user, chain):
    session, runs = chain
    client.force_login(user)
    comparison = blind_comparison(user, session, runs[2])
    assert client.get(reverse("comparisons:cell", args=[comparison.pk, 5, 0])).status_code == 404
    assert client.get(reverse("comparisons:cell", args=[comparison.pk, 0, 7])).status_code == 404
    assert client.get(f"/compare/new/not-a-uuid/{runs[0].pk}/").status_code == 404
    assert client.get("/compare/not-a-uuid/").status_code == 404


def form_data(**overrides):
    data = {
        "mode": "new_prompt", "prompt": "What is a tree?", "blind": "on", "tags": "ui",
        "v0-label": "small", "v0-model": "model-s", "v0-temperature": "0.2", "v0-memory_id": "default",
        "v1-label": "large", "v1-model": "model-l", "v1-system_prompt": "Be precise.", "v1-memory_id": "default",
        "v1-memory_window_size": "6",
    }
    for i in (2, 3):
        data.update({f"v{i}-label": "", f"v{i}-memory_id": "default"})
    data.update(overrides)
    return data


def test_start_form_creates_a_comparison(client, user, chain):
    session, runs = chain
    client.force_login(user)
    url = reverse("comparisons:new", args=[session.pk, runs[3].pk])
    page = client.get(url)
    assert page.status_code == 200 and b"Variant 4" in page.content
    response = client.post(url, form_data())
    comparison = Comparison.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("comparisons:detail", args=[comparison.pk])
    assert comparison.blind and comparison.prompts == ["What is a tree?"]
    assert list(comparison.tags.values_list("name", flat=True)) == ["ui"]
    large = comparison.variants.get(label="large")
    assert large.config["system_prompt"] == "Be precise." and large.config["memory_window_size"] == 6
    assert comparison.variants.get(label="small").config["params"] == {"temperature": 0.2}
    new_children = Run.objects.children_of(runs[3]).exclude(pk=runs[4].pk)
    assert set(new_children.values_list("model", flat=True)) == {"model-s", "model-l"}


def test_start_form_replay(client, user, chain):
    session, runs = chain
    client.force_login(user)
    url = reverse("comparisons:new", args=[session.pk, runs[1].pk])
    page = client.get(url).content.decode()
    assert str(runs[4].pk) in page and "3 turns" in page
    response = client.post(url, form_data(mode="replay", prompt="", source_run=str(runs[4].pk)))
    assert response.status_code == 302
    comparison = Comparison.objects.get()
    assert comparison.mode == Mode.REPLAY and comparison.prompts == ["question 2", "question 3", "question 4"]


@pytest.mark.parametrize("overrides", [
    {"v1-label": ""},                       # one variant
    {"v1-label": "small"},                  # duplicate labels
    {"prompt": ""},                         # no prompt
    {"v0-temperature": "7"},                # out of range
    {"mode": "replay", "source_run": ""},  # replay without a branch
])
def test_start_form_rejects_bad_input(client, user, chain, overrides):
    session, runs = chain
    client.force_login(user)
    count = Run.objects.count()
    response = client.post(reverse("comparisons:new", args=[session.pk, runs[3].pk]), form_data(**overrides))
    assert response.status_code == 400
    assert b'class="error"' in response.content
    assert Comparison.objects.count() == 0 and Run.objects.count() == count


def test_vote_before_the_answers_is_refused(client, user, chain):
    session, runs = chain
    client.force_login(user)
    comparison = blind_comparison(user, session, runs[2])
    response = client.post(reverse("comparisons:vote", args=[comparison.pk, 0]), {"choice": "tie"},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 409 and b"every variant" in response.content
    assert not Vote.objects.exists()


def test_continue_a_variant_branch_after_the_vote(client, user, chain):
    """"Continue this branch" makes the variant's last run the session's active run and opens the
    session page; in a blind comparison only after the vote."""
    session, runs = chain
    client.force_login(user)
    comparison = blind_comparison(user, session, runs[2])
    finish_all(comparison)
    url = reverse("comparisons:open_branch", args=[comparison.pk, 1])
    assert client.post(url).status_code == 409
    services.vote_cast(comparison=comparison, turn=0, choice="tie")
    response = client.post(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("conversations:session_detail", args=[session.pk])
    expected = VariantRun.objects.get(
        variant__comparison=comparison, variant__position=comparison.column_order[1],
    ).run_id
    session.refresh_from_db()
    assert session.active_run_id == expected
    page = client.get(reverse("comparisons:detail", args=[comparison.pk])).content.decode()
    assert reverse("comparisons:new", args=[session.pk, expected]) in page  # compare again from there
    assert reverse("conversations:run_fork", args=[session.pk, expected]) in page


def test_metrics_and_cost(client, user, chain, settings):
    """Each cell shows tokens, time to first token, total latency and (where its model has a price)
    cost; a replay shows per-column totals."""
    settings.ARBOR_MODEL_PRICES = {"model-s": {"prompt": 1.0, "completion": 2.0}}
    session, runs = chain
    client.force_login(user)
    comparison = services.comparison_start(
        owner=user, session=session, branch_point=runs[2], mode=Mode.REPLAY, source_run=runs[4],
        variants=[VariantSpec(label="s", model="model-s"), VariantSpec(label="l", model="model-l")],
    )
    for turn in (0, 1):
        for vr in VariantRun.objects.filter(variant__comparison=comparison, turn=turn).select_related("run"):
            finish_run(vr.run, prompt_tokens=1000, completion_tokens=500, ttft=0.3, latency=2.25)
            if turn == 0:
                advance.variant_advance(variant_id=vr.variant_id, finished_run_id=vr.run_id)
    html = client.get(reverse("comparisons:detail", args=[comparison.pk])).content.decode()
    assert html.count("1000 in · 500 out") == 4
    assert html.count("<dd>0.30 s</dd>") == 4 and html.count("<dd>2.25 s</dd>") == 4  # first token, total
    assert html.count("$0.002000") == 2  # 1000 × $1/1M + 500 × $2/1M, model-s cells only
    assert "2 of 2 answers · 2000 in / 1000 out tokens · 4.50 s · $0.004000" in html  # column total of model-s
    assert "2 of 2 answers · 2000 in / 1000 out tokens · 4.50 s</div>" in html  # model-l: no price, no cost


def test_a_list_price_renders_the_comparison_page_and_results(client, user, chain, settings):
    """A price as ``[prompt, completion]`` (the admin's other format) costs the same as the dict:
    the comparison page shows it, and the results and new-comparison pages still render."""
    settings.ARBOR_MODEL_PRICES = {"model-s": [1.0, 2.0], "model-l": {"prompt": 1.0, "completion": 2.0}}
    session, runs = chain
    client.force_login(user)
    comparison = services.comparison_start(
        owner=user, session=session, branch_point=runs[2], prompt="price me",
        variants=[VariantSpec(label="s", model="model-s"), VariantSpec(label="l", model="model-l")],
    )
    for vr in VariantRun.objects.filter(variant__comparison=comparison).select_related("run"):
        finish_run(vr.run, prompt_tokens=1000, completion_tokens=500)
    response = client.get(reverse("comparisons:detail", args=[comparison.pk]))
    assert response.status_code == 200
    assert response.content.decode().count("$0.002000") == 2  # 1000 × $1/1M + 500 × $2/1M, in both cells
    services.vote_cast(comparison=comparison, turn=0, choice="a_better")
    assert client.get(reverse("comparisons:results")).status_code == 200
    page = client.get(reverse("comparisons:new", args=[session.pk, runs[2].pk]))
    assert page.status_code == 200 and "model-s" in page.content.decode()


def test_other_users_session_or_run_is_the_404_page(client, other_user, chain):
    """Starting a comparison from another user's session or run answers the site's 404 page."""
    session, runs = chain
    client.force_login(other_user)
    assert client.get(reverse("comparisons:new", args=[session.pk, runs[2].pk])).status_code == 404


def make_results(user, chain):
    """Two non-blind comparisons of the same two configurations and one blind unrevealed one.

    Votes: comparison 1 — fast better; comparison 2 — fast better; blind one — not counted."""
    session, runs = chain

    def specs():
        return [VariantSpec(label="fast", model="model-f"), VariantSpec(label="smart", model="model-s")]

    c1 = services.comparison_start(owner=user, session=session, branch_point=runs[1], variants=specs(), prompt="a",
                                   tags="speed")
    c2 = services.comparison_start(owner=user, session=session, branch_point=runs[2], variants=specs(), prompt="b")
    c3 = services.comparison_start(owner=user, session=session, branch_point=runs[3], variants=specs(), prompt="c",
                                   blind=True, mode=Mode.REPLAY, source_run=runs[4])
    for c in (c1, c2, c3):
        finish_all(c)
    services.vote_cast(comparison=c1, turn=0, choice="a_better")
    services.vote_cast(comparison=c2, turn=0, choice="a_better")
    return c1, c2, c3


def test_results_page_and_exports(client, user, chain):
    client.force_login(user)
    make_results(user, chain)
    page = client.get(reverse("comparisons:results"))
    html = page.content.decode()
    assert page.status_code == 200 and "<svg" in html and "fast" in html and "2–0–0" in html
    assert "2 comparisons, 2 votes" in html
    body = client.get(reverse("comparisons:results_json")).json()
    rows = {r["label"]: r for r in body["configurations"]}
    assert rows["fast"]["wins"] == 2 and rows["fast"]["losses"] == 0 and rows["fast"]["votes"] == 2
    assert rows["fast"]["win_rate"] == 1.0
    assert rows["fast"]["ci_low"] == pytest.approx(0.3424, abs=1e-4) and rows["fast"]["ci_high"] == pytest.approx(1.0)
    assert rows["smart"]["ci_high"] == pytest.approx(1 - 0.3424, abs=1e-4)
    assert rows["fast"]["rating"] > 1500 > rows["smart"]["rating"]
    response = client.get(reverse("comparisons:results_csv"))
    assert response["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["label"] for r in table] == ["fast", "smart"]
    assert table[0]["wins"] == "2" and float(table[0]["win_rate"]) == 1.0


def test_results_filters(client, user, chain):
    client.force_login(user)
    c1, c2, _ = make_results(user, chain)
    by_tag = client.get(reverse("comparisons:results_json"), {"tag": "speed"}).json()
    assert by_tag["comparisons"] == 1 and by_tag["votes"] == 1
    Comparison.objects.filter(pk=c2.pk).update(created_at=datetime(2020, 1, 1, tzinfo=UTC))
    recent = client.get(reverse("comparisons:results_json"), {"since": "2021-01-01"}).json()
    assert recent["votes"] == 1
    old = client.get(reverse("comparisons:results_json"), {"until": "2020-01-01"}).json()
    assert old["votes"] == 1 and old["comparisons"] == 1
    both = client.get(reverse("comparisons:results_csv"), {"since": "2019-12-31", "until": "2020-01-01"})
    assert list(csv.DictReader(io.StringIO(both.content.decode())))[0]["votes"] == "1"
    partial = client.get(reverse("comparisons:results"), {"tag": "speed"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="results-table"' in partial and "<html" not in partial
    assert client.get(reverse("comparisons:results"), {"since": "yesterday"}).status_code == 400
    assert client.get(reverse("comparisons:results_json"), {"until": "2020-13-45"}).status_code == 400


def test_results_json_is_valid_json_with_method(client, user, chain):
    client.force_login(user)
    make_results(user, chain)
    response = client.get(reverse("comparisons:results_json"))
    body = json.loads(response.content)
    assert body["confidence"] == 0.95 and "Wilson" in body["win_rate"] and "Bradley-Terry" in body["rating"]
    assert "attachment" in response["Content-Disposition"]


@pytest.mark.parametrize(("n", "turns"), [(2, 1), (4, 3)])
def test_detail_page_queries_do_not_grow_with_turns_or_variants(client, user, chain, n, turns,
                                                                django_assert_max_num_queries):
    """The side-by-side page reads a fixed number of queries, whatever the number of variants,
    turns and votes."""
    session, runs = chain
    client.force_login(user)
    specs = [VariantSpec(label=f"v{i}", model=f"m{i}") for i in range(n)]
    kwargs = {"prompt": "p"} if turns == 1 else {"mode": Mode.REPLAY, "source_run": runs[4]}
    branch_point = runs[4 - turns]
    comparison = services.comparison_start(owner=user, session=session, branch_point=branch_point, variants=specs,
                                           blind=True, **kwargs)
    for turn in range(turns):
        for vr in VariantRun.objects.filter(variant__comparison=comparison, turn=turn):
            finish_run(vr.run)
            advance.variant_advance(variant_id=vr.variant_id, finished_run_id=vr.run_id)
        choice = "a_better" if n == 2 else "ranking"
        services.vote_cast(comparison=comparison, turn=turn, choice=choice, ranking={i: i + 1 for i in range(n)})
    with django_assert_max_num_queries(11):  # 10, and the user's colour theme (base.html)
        response = client.get(reverse("comparisons:detail", args=[comparison.pk]))
    assert response.status_code == 200 and response.content.count(b'class="cell done') == n * turns


def test_starting_comparisons_counts_against_the_run_rate_limit(client, settings):
    """Starting a comparison creates runs, so it is rate limited like the chat (GET is not)."""
    from tests.support.factories import SessionFactory, UserFactory, build_chain

    settings.ARBOR_RUN_RATE = "1/h"  # fixed windows: an hour makes a window edge between the posts unlikely
    # The counts live in the cache for the window, keyed by user id: an id no other run of this test used.
    user = UserFactory(id=random.randint(10**8, 2 * 10**9))
    session = SessionFactory(owner=user)
    runs = build_chain(session, 4)
    client.force_login(user)
    url = reverse("comparisons:new", args=[session.pk, runs[3].pk])
    assert client.get(url).status_code == 200
    assert client.post(url, form_data()).status_code == 302
    response = client.post(url, form_data(prompt="again"))
    assert response.status_code == 429 and b"Too many runs" in response.content
    assert Comparison.objects.count() == 1
