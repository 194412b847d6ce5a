"""The console's server side over HTTP, in process: sign-in and the cookie, the origin
check, the role check on actions, and bad input rendered as a page with the API's own
status and error code, everything escaped. The browser tests (test_browser.py) drive
the same pages in Chromium against a real `workbench up`."""

import asyncio
import re
from collections.abc import Callable
from uuid import uuid4

import httpx
import pytest
from conftest import JWT_SECRET
from signed_in import BASE, SAME_ORIGIN, error_code, sign_in, token
from signed_in import browser as browser  # the fixture
from starlette.applications import Starlette

from api.auth import mint_token

TASKS = "/api/agents/tasks"


async def test_sign_in_sets_a_strict_http_only_cookie_that_expires_with_the_token(
    browser: httpx.AsyncClient, tenant: str
) -> None:
    response = await sign_in(browser, token(tenant, "operator", ttl=600))
    assert response.status_code == 303 and response.headers["location"] == "/console/tasks"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    max_age = int(re.search(r"Max-Age=(\d+)", cookie).group(1))
    assert 590 <= max_age <= 600
    page = await browser.get("/console/tasks")
    assert page.status_code == 200 and "carol" in page.text and tenant in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]

    out = await browser.post("/console/sign-out", headers=SAME_ORIGIN)
    assert out.status_code == 303 and 'workbench_console=""' in out.headers["set-cookie"]
    after = await browser.get("/console/tasks")
    assert after.status_code == 303 and after.headers["location"].startswith("/console/sign-in")


async def test_a_bad_token_is_refused_on_the_sign_in_page(
    browser: httpx.AsyncClient, tenant: str
) -> None:
    forged = mint_token(
        "another-secret-that-is-long-enough-for-hs256",
        subject="x",
        roles=["owner"],
        tenant_id=tenant,
    )
    for value in ("not a token", forged, ""):
        response = await sign_in(browser, value)
        assert response.status_code == 401, response.text
        assert error_code(response) == "unauthenticated"
        assert "set-cookie" not in response.headers
        assert "Traceback" not in response.text


async def test_a_forged_or_expired_cookie_signs_out(
    browser: httpx.AsyncClient, tenant: str
) -> None:
    browser.cookies.set("workbench_console", "forged.cookie.value", domain="workbench.test")
    response = await browser.get("/console/tasks?status=queued")
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/console/sign-in?next=%2Fconsole%2Ftasks%3Fstatus%3Dqueued"
    )
    expired = mint_token(
        JWT_SECRET, subject="x", roles=["operator"], tenant_id=tenant, ttl_seconds=-5
    )
    browser.cookies.set("workbench_console", expired, domain="workbench.test")
    response = await browser.get("/console/approvals")
    assert response.status_code == 303 and response.headers["location"].endswith("&expired=1")
    assert 'workbench_console=""' in response.headers["set-cookie"]
    # An htmx fragment request is told where to go instead of being redirected.
    browser.cookies.set("workbench_console", expired, domain="workbench.test")
    fragment = await browser.get("/console/tasks/rows", headers={"hx-request": "true"})
    assert fragment.status_code == 401 and "expired=1" in fragment.headers["hx-redirect"]
    page = await browser.get("/console/sign-in?expired=1")
    assert "Your session expired" in page.text


async def test_sign_in_goes_back_only_to_a_console_page(
    browser: httpx.AsyncClient, tenant: str
) -> None:
    for target in ("https://evil.example/", "//evil.example/console/", "/api/agents/tasks"):
        response = await browser.post(
            "/console/sign-in",
            data={"token": token(tenant, "viewer"), "next": target},
            headers=SAME_ORIGIN,
        )
        assert response.headers["location"] == "/console/tasks"


async def _operator_task(browser: httpx.AsyncClient, tenant: str, title: str) -> str:
    await sign_in(browser, token(tenant, "operator"))
    created = await browser.post(
        "/console/tasks",
        data={"lane": "analysis", "title": title, "instructions": "Summarise."},
        headers=SAME_ORIGIN,
    )
    assert created.status_code == 303, created.text
    return created.headers["location"].rsplit("/", 1)[1]


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"sec-fetch-site": "cross-site", "origin": BASE},
        {"sec-fetch-site": "same-site"},
        {"origin": "null"},
        {},
    ],
)
async def test_a_state_change_from_elsewhere_is_refused(
    browser: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    task_id = await _operator_task(browser, tenant, "Cross-site target")
    response = await browser.post(
        f"/console/tasks/{task_id}/cancel", data={"reason": "csrf"}, headers=headers
    )
    assert response.status_code == 403 and error_code(response) == "cross_origin_refused"
    assert 'data-status="queued"' in (await browser.get(f"/console/tasks/{task_id}")).text
    same = await browser.post(
        f"/console/tasks/{task_id}/cancel",
        data={"reason": "ok"},
        headers={"sec-fetch-site": "same-origin"},
    )
    assert same.status_code == 303


async def test_a_viewer_sees_no_actions_and_a_forged_action_is_refused(
    browser: httpx.AsyncClient, tenant: str, new_task: Callable, auth: Callable
) -> None:
    task = (await new_task())["task"]
    await sign_in(browser, token(tenant, "viewer"))
    page = await browser.get(f"/console/tasks/{task['id']}")
    assert page.status_code == 200
    assert page.text.count("<button") == 1 and "Sign out" in page.text  # sign-out only
    assert "New task" not in (await browser.get("/console/tasks")).text
    for action, data in [
        ("cancel", {"reason": "forged"}),
        ("approve", {"reason": "forged"}),
        ("rollback", {"reason": "r", "remediation": "m"}),
    ]:
        forged = await browser.post(
            f"/console/tasks/{task['id']}/{action}", data=data, headers=SAME_ORIGIN
        )
        assert forged.status_code == 403 and error_code(forged) == "forbidden"
    for path, data in [
        ("/console/tasks", {"lane": "analysis", "title": "t", "instructions": "i"}),
        (
            "/console/tasks/bulk/apply",
            {"action": "cancel", "task_id": task["id"], "confirm": "yes"},
        ),
        (f"/console/approvals/{uuid4()}", {"decision": "approved"}),
    ]:
        forged = await browser.post(path, data=data, headers=SAME_ORIGIN)
        assert forged.status_code == 403 and error_code(forged) == "forbidden"
    api = await browser.get(f"{TASKS}/{task['id']}", headers=auth("viewer"))
    assert api.json()["task"]["status"] == "queued"


async def test_bad_input_answers_with_the_api_code_as_a_page(
    browser: httpx.AsyncClient, tenant: str, http: httpx.AsyncClient, auth: Callable
) -> None:
    task_id = await _operator_task(browser, tenant, "Mine")
    other = await http.post(
        TASKS,
        json={"lane": "analysis", "title": "Theirs", "instructions": "Summarise."},
        headers=auth("operator", tenant_id=f"{tenant}-other"),
    )
    theirs = other.json()["task"]["id"]
    cases = [
        ("/console/tasks?status=bogus", f"{TASKS}?status=bogus", 400, "invalid_request"),
        ("/console/tasks?limit=0", f"{TASKS}?limit=0", 400, "invalid_request"),
        ("/console/tasks?cursor=nope", f"{TASKS}?cursor=nope", 400, "invalid_request"),
        ("/console/tasks?colour=red", f"{TASKS}?colour=red", 400, "invalid_request"),
        (f"/console/tasks/{theirs}", f"{TASKS}/{theirs}", 404, "not_found"),
        (f"/console/tasks/{uuid4()}", f"{TASKS}/{uuid4()}", 404, "not_found"),
        ("/console/tasks/not-a-uuid", f"{TASKS}/not-a-uuid", 404, "not_found"),
    ]
    for console_path, api_path, status, code in cases:
        page = await browser.get(console_path)
        api = await http.get(api_path, headers=auth("operator"))
        assert (page.status_code, error_code(page)) == (status, code), console_path
        assert (api.status_code, api.json()["error"]["code"]) == (status, code), api_path
        assert page.headers["content-type"].startswith("text/html")
        assert "Traceback" not in page.text
    long_text = await browser.get("/console/tasks?text=" + "x" * 201)
    assert long_text.status_code == 400 and error_code(long_text) == "invalid_request"
    again = await browser.post(
        f"/console/tasks/{task_id}/retry", data={"reason": ""}, headers=SAME_ORIGIN
    )
    assert again.status_code == 409 and error_code(again) == "invalid_transition"
    missing = await browser.get("/console/no-such-page")
    assert missing.status_code == 404 and error_code(missing) == "not_found"
    bad_create = await browser.post(
        "/console/tasks",
        data={"lane": "no-such-lane", "title": "t", "instructions": "i"},
        headers=SAME_ORIGIN,
    )
    assert bad_create.status_code == 400 and error_code(bad_create) == "invalid_request"


async def test_everything_shown_is_escaped(browser: httpx.AsyncClient, tenant: str) -> None:
    title = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    task_id = await _operator_task(browser, tenant, title)
    for path in (f"/console/tasks/{task_id}", "/console/tasks", "/console/tasks?text=<script>"):
        page = await browser.get(path)
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


async def test_the_text_filter_and_counts_read_the_tenant_only(
    browser: httpx.AsyncClient, tenant: str
) -> None:
    await _operator_task(browser, tenant, "Rotate the 100% certificates")
    await _operator_task(browser, tenant, "Summarise the incident")
    found = await browser.get("/console/tasks?text=100%25")
    assert "Rotate the 100% certificates" in found.text and "Summarise the" not in found.text
    wildcard = await browser.get("/console/tasks?text=_")
    assert "Rotate the" not in wildcard.text  # `_` is a character, not a wildcard
    assert re.search(r'data-count="queued">2<', (await browser.get("/console/tasks")).text)


async def test_bulk_cancel_asks_first_then_reports_each_task(
    browser: httpx.AsyncClient, tenant: str
) -> None:
    first = await _operator_task(browser, tenant, "Bulk one")
    second = await _operator_task(browser, tenant, "Bulk two")
    await browser.post(f"/console/tasks/{second}/cancel", data={}, headers=SAME_ORIGIN)
    ask = await browser.post(
        "/console/tasks/bulk",
        data={"action": "cancel", "task_id": [first, second]},
        headers=SAME_ORIGIN,
    )
    assert ask.status_code == 200 and "Cancel 2 tasks?" in ask.text
    # Nothing happened yet: the first is still queued.
    assert 'data-status="queued"' in (await browser.get(f"/console/tasks/{first}")).text
    unconfirmed = await browser.post(
        "/console/tasks/bulk/apply",
        data={"action": "cancel", "task_id": [first, second]},
        headers=SAME_ORIGIN,
    )
    assert unconfirmed.status_code == 400
    done = await browser.post(
        "/console/tasks/bulk/apply",
        data={"action": "cancel", "task_id": [first, second], "confirm": "yes", "reason": "bulk"},
        headers=SAME_ORIGIN,
    )
    assert done.status_code == 200
    assert re.findall(r'data-outcome="(\w+)"', done.text) == ["ok", "invalid_transition"]


async def test_the_console_is_not_in_the_api_description(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/console")]
    static = await http.get("/console/static/htmx.min.js")
    assert static.status_code == 200 and "javascript" in static.headers["content-type"]


async def test_break_glass_is_an_owners_with_the_acknowledgement(
    browser: httpx.AsyncClient, tenant: str, new_task: Callable, http: httpx.AsyncClient, auth
) -> None:
    # Past the lane's ceiling: denied, unless an owner asks for break glass.
    created = await new_task(
        role="owner", mutation_level="write_prod", break_glass_acknowledged=True
    )
    task = created["task"]
    assert (task["status"], task["policy_verdict"]["decision"]) == ("awaiting_approval", "deny")
    path = f"/console/tasks/{task['id']}"

    await sign_in(browser, token(tenant, "operator"))
    page = await browser.get(path)
    assert "Break glass" not in page.text and "/approve" not in page.text and "/reject" in page.text
    refused = await browser.post(path + "/approve", data={"reason": "x"}, headers=SAME_ORIGIN)
    assert refused.status_code == 403 and error_code(refused) == "policy_forbidden"

    await sign_in(browser, token(tenant, "owner"))
    page = await browser.get(path)
    assert "Break glass and approve" in page.text and 'name="break_glass"' in page.text
    unacknowledged = await browser.post(
        path + "/approve", data={"reason": "outage"}, headers=SAME_ORIGIN
    )
    assert unacknowledged.status_code == 403 and error_code(unacknowledged) == "policy_forbidden"
    approved = await browser.post(
        path + "/approve",
        data={"reason": "outage", "break_glass": "yes"},
        headers=SAME_ORIGIN,
    )
    assert approved.status_code == 303
    after = (await http.get(f"{TASKS}/{task['id']}", headers=auth("viewer"))).json()["task"]
    assert after["status"] == "queued" and after["approval"]["break_glass"] is True


async def test_rollback_needs_its_remediation(browser: httpx.AsyncClient, tenant: str) -> None:
    task_id = await _operator_task(browser, tenant, "To roll back")
    path = f"/console/tasks/{task_id}"
    await browser.post(path + "/cancel", data={}, headers=SAME_ORIGIN)
    assert "Request rollback" in (await browser.get(path)).text
    missing = await browser.post(path + "/rollback", data={"reason": "bad"}, headers=SAME_ORIGIN)
    assert missing.status_code == 400 and error_code(missing) == "invalid_request"
    done = await browser.post(
        path + "/rollback",
        data={"reason": "bad change", "remediation": "restore the backup"},
        headers=SAME_ORIGIN,
    )
    assert done.status_code == 303
    page = await browser.get(path)
    assert 'data-status="rollback_requested"' in page.text and "restore the backup" in page.text


async def test_the_live_streams_end_when_the_process_stops(
    browser: httpx.AsyncClient, tenant: str, app: Starlette
) -> None:
    """They never end by themselves: left open in a tab, they would hold the shutdown."""
    task_id = await _operator_task(browser, tenant, "Followed")
    stopping = app.state.stopping

    async def stop_soon() -> None:
        await asyncio.sleep(0.5)
        stopping.set()

    stopper = asyncio.create_task(stop_soon())
    try:
        async with asyncio.timeout(10):
            changes, trace = await asyncio.gather(
                browser.get("/console/live/changes"),
                browser.get(f"/console/tasks/{task_id}/live"),
            )
    finally:
        await stopper
        app.state.stopping = asyncio.Event()  # the session's app goes on serving
    assert changes.status_code == 200 and changes.text.startswith("retry: 3000")
    assert trace.status_code == 200 and 'data-kind="created"' in trace.text
