"""The task list: filters kept in the URL, cursor pages, counts per status, rows that
follow the tenant's changes, a form to create a task, and bulk cancel and retry with a
confirmation. The list is the REST list (`Ledger.list_tasks`, its query model and its
400s); a text filter narrows it by title (`Ledger.search_tasks`)."""

import secrets
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.endpoints import validate_body, validate_query
from api.errors import ApiError
from api.schemas import TaskListQuery
from console import live
from console.auth import Me, signed_view
from console.render import PREFIX, is_fragment, page
from ledger.errors import LedgerError
from ledger.models import ReasonRequest, TaskCreateRequest
from ledger.states import TaskStatus, may

TEXT_MAX = 200
BULK_MAX = 200
BULK_ACTIONS = ("cancel", "retry")
PAGE_SIZE = 25


def _filters(request: Request) -> tuple[TaskListQuery, str | None, dict[str, str]]:
    """The list's filters from the URL, as the REST list validates them; empty values
    are no filter. Also the text filter and the filters as they go back into links."""
    params = {key: value for key, value in request.query_params.items() if value != ""}
    text = params.pop("text", None)
    if text is not None and len(text) > TEXT_MAX:
        raise ApiError(400, "invalid_request", f"text may be at most {TEXT_MAX} characters")
    if "\x00" in (text or "") or any("\x00" in value for value in params.values()):
        raise ApiError(400, "invalid_request", "the request contains a NUL character")
    params.setdefault("limit", str(PAGE_SIZE))
    query = validate_query(TaskListQuery, params)
    kept = {key: value for key, value in params.items() if key != "cursor"}
    if text:
        kept["text"] = text
    return query, text, kept


async def _list_context(request: Request, me: Me) -> dict[str, Any]:
    query, text, kept = _filters(request)
    ledger = request.app.state.ledger
    if text:
        listing = await ledger.search_tasks(
            me.tenant,
            text=text,
            status=query.status,
            lane=query.lane,
            limit=query.limit,
            cursor=query.cursor,
        )
    else:
        listing = await ledger.list_tasks(
            me.tenant, status=query.status, lane=query.lane, limit=query.limit, cursor=query.cursor
        )
    counts = await ledger.status_counts(me.tenant, lane=query.lane)
    here = dict(kept, **({"cursor": query.cursor} if query.cursor else {}))
    return {
        "tasks": listing.tasks,
        "next_link": f"?{urlencode({**kept, 'cursor': listing.next_cursor})}"
        if listing.next_cursor
        else None,
        "first_link": f"?{urlencode(kept)}" if query.cursor else None,
        "counts": counts,
        "count_cap": 10_000,
        "status": query.status,
        "lane": query.lane,
        "text": text or "",
        "kept": kept,
        "rows_url": f"{PREFIX}/tasks/rows?{urlencode(here)}",
        "status_link": lambda status: "?" + urlencode({**kept, "status": status}),
        "statuses": [str(status) for status in TaskStatus],
        "lanes": request.app.state.ledger.policy.lanes,
        "may": may,
    }


@signed_view
async def task_list(request: Request, me: Me) -> Response:
    context = await _list_context(request, me)
    policy = request.app.state.ledger.policy
    context.update(
        levels=policy.mutation_levels,
        providers=list(policy.providers),
        idempotency_key=secrets.token_urlsafe(16),
    )
    if is_fragment(request):
        return page(request, "_task_rows.html", context)
    return page(request, "tasks.html", context)


@signed_view
async def task_rows(request: Request, me: Me) -> Response:
    """The list's live part: rows, counts and page links, as the page's filters say."""
    return page(request, "_task_rows.html", await _list_context(request, me))


@signed_view
async def tenant_changes(request: Request, me: Me) -> Response:
    return live.changes(request, me)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


@signed_view
async def create_task(request: Request, me: Me) -> Response:
    """The REST create (`POST /api/agents/tasks`): same model, same ledger call."""
    actor = me.principal.actor_for("operator")
    form = await request.form()
    scope: dict[str, Any] = {}
    if rollback := _text(form, "rollback").strip():
        scope["rollback"] = rollback
    body = validate_body(
        TaskCreateRequest,
        {
            "lane": _text(form, "lane"),
            "title": _text(form, "title"),
            "instructions": _text(form, "instructions"),
            "mutation_level": _text(form, "mutation_level") or "read_only",
            "model_provider": _text(form, "model_provider") or "offline",
            "scope": scope,
        },
    )
    key = _text(form, "idempotency_key") or None
    created = await request.app.state.ledger.create_task(actor, body, idempotency_key=key)
    return RedirectResponse(f"{PREFIX}/tasks/{created.task.id}", status_code=303)


def _bulk_ids(form: FormData) -> list[UUID]:
    raw = [value for value in form.getlist("task_id") if isinstance(value, str)]
    if not raw:
        raise ApiError(400, "invalid_request", "select at least one task")
    if len(raw) > BULK_MAX:
        raise ApiError(400, "invalid_request", f"at most {BULK_MAX} tasks at once")
    try:
        return list(dict.fromkeys(UUID(value) for value in raw))
    except ValueError as error:
        raise ApiError(400, "invalid_request", "a selected task id is not a uuid") from error


def _bulk_action(form: FormData) -> str:
    action = _text(form, "action")
    if action not in BULK_ACTIONS:
        raise ApiError(400, "invalid_request", f"action must be one of {', '.join(BULK_ACTIONS)}")
    return action


@signed_view
async def bulk_confirm(request: Request, me: Me) -> Response:
    """The confirmation: what is selected, and whether its status allows the action."""
    me.principal.actor_for("operator")
    form = await request.form()
    action, ids = _bulk_action(form), _bulk_ids(form)
    ledger = request.app.state.ledger
    rows = []
    for task_id in ids:
        try:
            task = await ledger.get_task(me.tenant, task_id)
        except LedgerError as error:
            rows.append({"id": task_id, "task": None, "error": error.code})
            continue
        rows.append({"id": task_id, "task": task, "allowed": may(action, task.status)})
    return page(request, "bulk_confirm.html", {"action": action, "rows": rows})


@signed_view
async def bulk_apply(request: Request, me: Me) -> Response:
    """Each selected task through the REST action's ledger call; each outcome shown."""
    actor = me.principal.actor_for("operator")
    form = await request.form()
    action, ids = _bulk_action(form), _bulk_ids(form)
    if _text(form, "confirm") != "yes":
        raise ApiError(400, "invalid_request", "the bulk action was not confirmed")
    body = validate_body(ReasonRequest, {"reason": _text(form, "reason")})
    ledger = request.app.state.ledger
    results = []
    for task_id in ids:
        try:
            moved = await getattr(ledger, action)(actor, task_id, reason=body.reason)
        except LedgerError as error:
            results.append(
                {"id": task_id, "ok": False, "code": error.code, "message": error.message}
            )
            continue
        results.append({"id": task_id, "ok": True, "task": moved.task})
    return page(request, "bulk_done.html", {"action": action, "results": results})
