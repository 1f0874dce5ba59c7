"""The connections page: list, add, edit, delete; per connection its models (refreshed from the
endpoint or added by hand, each with its context window and prices) and a health check.

Function views; htmx partials (``template#partial``) for the actions that change part of a page
(health, models, the add form); every action works without JavaScript too (a redirect). Another
user's connection is 404 (:mod:`connections.selectors`); a shared one can be changed by
administrators only (403). The API key and extra headers are never rendered back.
"""

from __future__ import annotations

from django.contrib import messages as flash
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.errors import ArborError
from core.refusals import answers_refusals

from . import services
from .forms import ConnectionForm, ModelForm
from .models import Connection
from .selectors import (
    can_manage,
    get_connection_for,
    get_connection_to_manage,
    get_model_for,
    is_admin,
    models_of,
    visible_connections_with_models,
)


def _partial(request) -> bool:
    return bool(request.htmx) and not request.htmx.boosted


def _refused(request, status: int) -> int:
    """The status of a page or partial that shows a refusal next to the form: htmx swaps only 2xx
    answers, so its partials come back 200; a plain form post gets the real status."""
    return 200 if _partial(request) else status


def _index_context(request, form: ConnectionForm | None = None, **extra) -> dict:
    connections = list(visible_connections_with_models(request.user))
    for connection in connections:
        connection.manageable = can_manage(request.user, connection)
    return {"connections": connections, "form": form or ConnectionForm(may_share=is_admin(request.user)),
            "may_share": is_admin(request.user), **extra}


def _detail_context(request, connection: Connection, form: ConnectionForm | None = None, **extra) -> dict:
    manageable = can_manage(request.user, connection)
    return {
        "connection": connection, "manageable": manageable,
        "models": models_of(connection),
        "form": form or ConnectionForm(connection=connection, may_share=is_admin(request.user)),
        "model_form": ModelForm(), **extra,
    }


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The user's connections and the shared ones, with health and models; the add form."""
    return render(request, "connections/index.html", _index_context(request))


@require_POST
def create(request: HttpRequest) -> HttpResponse:
    """Add a connection. Saved even when its endpoint does not answer: the page warns."""
    form = ConnectionForm(request.POST, may_share=is_admin(request.user))
    status, saved = 400, None
    if form.is_valid():
        try:
            saved = services.connection_create(user=request.user, **form.changes())
        except ArborError as exc:
            form.add_error(None, exc.message)
            status = exc.status
    if saved is not None and not _partial(request):
        if saved.warning:
            flash.warning(request, saved.warning)
        else:
            flash.success(request, f"Added “{saved.connection.name}”: {saved.check.message}")
        return redirect("connections:detail", connection_id=saved.connection.pk)
    if saved is not None:
        form = None  # a fresh form for the next one
    context = _index_context(request, form, saved=saved)
    template = "connections/index.html#listing" if _partial(request) else "connections/index.html"
    return render(request, template, context, status=200 if saved is not None else _refused(request, status))


@require_http_methods(["GET", "POST"])
def detail(request: HttpRequest, connection_id: int) -> HttpResponse:
    """GET: a connection, its models and the edit form. POST: save the edit (administrators for a
    shared one); an endpoint that stops answering after the change is a warning, not a refusal."""
    if request.method == "GET":
        connection = get_connection_for(request.user, connection_id)
        return render(request, "connections/detail.html", _detail_context(request, connection))
    connection = get_connection_to_manage(request.user, connection_id)
    form = ConnectionForm(request.POST, connection=connection, may_share=is_admin(request.user))
    if form.is_valid():
        try:
            saved = services.connection_update(user=request.user, connection=connection, changes=form.changes())
        except ArborError as exc:
            form.add_error(None, exc.message)
        else:
            (flash.warning if saved.warning else flash.success)(request, saved.warning or "Saved.")
            return redirect("connections:detail", connection_id=connection.pk)
    connection.refresh_from_db()
    return render(request, "connections/detail.html", _detail_context(request, connection, form), status=400)


@require_POST
@answers_refusals(back="connections:detail")
def delete(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = get_connection_to_manage(request.user, connection_id)
    services.connection_delete(connection=connection)
    flash.info(request, f"Deleted “{connection.name}”. Agents that use it fail with its name until you pick another.")
    return redirect("connections:index")


@require_POST
def health(request: HttpRequest, connection_id: int) -> HttpResponse:
    """Check the endpoint now (anyone who may use the connection): the health badge, or the page."""
    connection = get_connection_for(request.user, connection_id)
    services.connection_check(connection=connection)
    if _partial(request):
        return render(request, "connections/_health.html", {"connection": connection})
    if request.POST.get("next") == "index":
        return redirect("connections:index")
    return redirect("connections:detail", connection_id=connection.pk)


@require_POST
def refresh(request: HttpRequest, connection_id: int) -> HttpResponse:
    """Fetch the endpoint's model list again: the models table (and the health badge, out of band)."""
    connection = get_connection_to_manage(request.user, connection_id)
    services.connection_refresh_models(connection=connection)
    if _partial(request):
        return render(request, "connections/detail.html#models_block",
                      {**_detail_context(request, connection), "oob": True})
    return redirect("connections:detail", connection_id=connection.pk)


def _models_response(request, connection: Connection, *, error: str = "", model_form=None,
                     status: int = 200) -> HttpResponse:
    if _partial(request):
        context = _detail_context(request, connection, model_error=error)
        if model_form is not None:
            context["model_form"] = model_form
        return render(request, "connections/detail.html#models_block", context, status=_refused(request, status))
    if error:
        flash.error(request, error)
    return redirect("connections:detail", connection_id=connection.pk)


@require_POST
def model_add(request: HttpRequest, connection_id: int) -> HttpResponse:
    """Add a model by hand (for endpoints that list none)."""
    connection = get_connection_to_manage(request.user, connection_id)
    form = ModelForm(request.POST)
    if not form.is_valid():
        return _models_response(request, connection, error="Check the model's fields.", model_form=form, status=400)
    try:
        services.model_add(connection=connection, name=form.cleaned_data["name"], **form.values())
    except ArborError as exc:
        return _models_response(request, connection, error=exc.message, model_form=form, status=exc.status)
    return _models_response(request, connection)


@require_POST
def model_edit(request: HttpRequest, connection_id: int, model_id: int) -> HttpResponse:
    """Set a model's context window and prices (empty: the settings' defaults)."""
    connection = get_connection_to_manage(request.user, connection_id)
    model = get_model_for(request.user, connection, model_id)
    form = ModelForm(request.POST, editing=True)
    if not form.is_valid():
        return _models_response(request, connection, error=f"{model.name}: check the numbers.", status=400)
    try:
        services.model_update(model=model, fields=form.values())
    except ArborError as exc:
        return _models_response(request, connection, error=exc.message, status=exc.status)
    return _models_response(request, connection)


@require_POST
def model_delete(request: HttpRequest, connection_id: int, model_id: int) -> HttpResponse:
    connection = get_connection_to_manage(request.user, connection_id)
    services.model_delete(model=get_model_for(request.user, connection, model_id))
    return _models_response(request, connection)
