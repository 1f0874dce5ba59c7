"""core.refusals: a refused action answers where the request came from (text, JSON, or a flash and
a redirect); NotFound and Forbidden still reach the site's 404 and 403 pages."""

from __future__ import annotations

import json

import pytest
from django.contrib.messages import get_messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.test import RequestFactory
from django_htmx.middleware import HtmxDetails

from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.refusals import answers_refusals
from tests.support.factories import RunFactory, SessionFactory

pytestmark = pytest.mark.django_db


def _request(**headers):
    request = RequestFactory().post("/anywhere", headers=headers)
    request.htmx = HtmxDetails(request)
    request._messages = CookieStorage(request)
    return request


def _raising(exc, seen=None):
    def view(request, **kwargs):
        if seen is not None:
            seen.append(kwargs)
        raise exc

    return view


def test_without_back_the_message_is_text_with_the_errors_status():
    response = answers_refusals()(_raising(Conflict("Vote first.")))(_request())
    assert response.status_code == 409
    assert response["Content-Type"] == "text/plain; charset=utf-8" and response.content.decode() == "Vote first."


@pytest.mark.parametrize("headers", [{"HX-Request": "true"}, {"X-Requested-With": "fetch"}])
def test_htmx_and_fetch_get_the_text_even_with_a_back(headers):
    request = _request(**headers)
    response = answers_refusals(back="conversations:session_list")(_raising(InvalidInput("Too long.")))(request)
    assert (response.status_code, response.content.decode()) == (400, "Too long.")
    assert not list(get_messages(request))


def test_a_form_post_flashes_the_message_and_goes_back_to_a_url_name_reversed_with_the_view_kwargs():
    request = _request()
    view = answers_refusals(back="conversations:session_detail")(_raising(InvalidInput("Empty title.")))
    session_id = "5b7d4f0e-6f4e-4a57-9d43-6a1c2b3c4d5e"
    response = view(request, session_id=session_id)
    assert response.status_code == 302 and response["Location"] == f"/s/{session_id}/"
    assert [(m.level_tag, m.message) for m in get_messages(request)] == [("error", "Empty title.")]


def test_a_callable_back_gets_the_request_and_the_view_kwargs():
    calls = []

    def back(request, **kwargs):
        calls.append(kwargs)
        return f"/somewhere/{kwargs['run_id']}#x"

    response = answers_refusals(back=back)(_raising(Conflict("Busy.")))(_request(), run_id="r1")
    assert response["Location"] == "/somewhere/r1#x" and calls == [{"run_id": "r1"}]


def test_as_json_answers_detail():
    response = answers_refusals(as_json=True)(_raising(InvalidInput("since: not a date")))(_request())
    assert response.status_code == 400 and json.loads(response.content) == {"detail": "since: not a date"}


@pytest.mark.parametrize("exc", [NotFound("No such run."), Forbidden("Only an administrator.")])
def test_lookups_and_permissions_pass_through(exc):
    with pytest.raises(type(exc)):
        answers_refusals(back="conversations:session_list")(_raising(exc))(_request())


def test_a_view_that_succeeds_is_untouched():
    def view(request):
        return "the page"

    assert answers_refusals(back="conversations:session_list")(view)(_request()) == "the page"


# --- through the site: a decorated page ---------------------------------------------------------------

def test_a_refused_rating_flashes_on_the_chat_and_another_users_run_is_the_404_page(client, user, other_user):
    run = RunFactory(session=SessionFactory(owner=user))
    client.force_login(user)
    url = f"/s/{run.session_id}/runs/{run.pk}/rate"
    refused = client.post(url, {"rating": "sideways"}, follow=True)
    assert refused.redirect_chain == [(f"/s/{run.session_id}/", 302)]
    assert "rating must be up, down or empty." in refused.content.decode()
    assert client.post(url, {"rating": "sideways"}, headers={"HX-Request": "true"}).status_code == 400

    client.force_login(other_user)
    lookup = client.post(url, {"rating": "sideways"})
    assert lookup.status_code == 404 and "rating must be" not in lookup.content.decode()
