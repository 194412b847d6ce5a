"""The console in Chromium, as a person uses it, against a real `workbench up`: sign in
with a minted token, create a task and watch it run and finish on the list and on its
page without reloading, approve a change-prod task and then the tool call it pauses at,
follow a conversation, see the lanes; a viewer sees no action and a forged one is
refused; a cross-site form is refused; the session ends on expiry and on sign-out; the
live streams pause while the tab is hidden. Then axe-core on every screen at desktop
and 390 px width, light and dark, and the screenshots."""

import json
import re
from collections.abc import Callable
from uuid import uuid4

import httpx
import pytest
from playwright.sync_api import Page, expect
from world import *  # noqa: F403 - the session's fixtures: stack, browser, api, ...
from world import DESKTOP, PHONE, mark, not_reloaded, serious, wait_for_status

TASKS = "/api/agents/tasks"
WRITE_CHANGE = '#call write_artifact {"name": "change.txt", "content": "replicas: 3"}'


def task_id_from(page: Page) -> str:
    return re.search(r"/console/tasks/([0-9a-f-]{36})", page.url).group(1)


def set_visibility(page: Page, state: str) -> None:
    """What the browser does when the tab is hidden or shown again."""
    page.evaluate(
        "state => { Object.defineProperty(document, 'visibilityState', "
        "{value: state, configurable: true}); "
        "document.dispatchEvent(new Event('visibilitychange')); }",
        state,
    )


def create(api: httpx.Client, **fields: object) -> dict:
    body = {"lane": "analysis", "title": "Summarise the incident", "instructions": "Summarise."}
    body.update(fields)
    response = api.post(TASKS, json=body)
    assert response.status_code == 201, response.text
    return response.json()["task"]


def test_create_a_task_and_watch_it_run_and_finish_without_reloading(
    sign_in: Callable[..., Page], api: httpx.Client, held, stack
) -> None:
    listing = sign_in("operator")
    mark(listing)
    lanes = listing.context.new_page()
    lanes.goto("/console/lanes")
    page = listing.context.new_page()
    page.goto("/console/tasks")
    page.get_by_text("New task").click()
    page.locator("#n-lane").select_option("analysis")
    page.get_by_label("Title", exact=True).fill("Check the payments service")
    gate = uuid4().hex
    page.get_by_label("Instructions").fill(
        "Check the payments service\n#call http_get "
        + json.dumps({"url": f"{held.url}/hold/{gate}"})
    )
    page.get_by_role("button", name="Create task").click()
    page.wait_for_url(re.compile(r"/console/tasks/[0-9a-f-]{36}$"))
    task_id = task_id_from(page)
    mark(page)

    # Under way: the tool call is held by the test's server (for HOLD_SECONDS at most,
    # the tool's own timeout: what is checked meanwhile is only looked at).
    status = page.locator("#task-status")
    expect(status).to_have_attribute("data-status", "running")
    expect(page.locator('#timeline li[data-kind="tool_verdict"]')).to_have_count(1)
    row = listing.locator(f"#task-{task_id}")
    expect(row).to_have_attribute("data-status", "running")

    expect(lanes.locator('tr[data-lane="analysis"] td[data-running]')).not_to_have_text("0")
    expect(lanes.locator("tr[data-worker]")).not_to_have_count(0)

    held.release(gate)
    expect(status).to_have_attribute("data-status", "succeeded")
    expect(row).to_have_attribute("data-status", "succeeded")
    expect(page.locator('#timeline li[data-kind="span.function"]')).not_to_have_count(0)
    # The timeline holds every trace event, in order, as the API has them.
    traces = api.get(f"{TASKS}/{task_id}/traces").json()["traces"]
    expect(page.locator("#timeline li")).to_have_count(len(traces))
    seqs = page.locator("#timeline li").evaluate_all("items => items.map(i => +i.dataset.seq)")
    assert seqs == [event["seq"] for event in traces]
    assert not_reloaded(page) and not_reloaded(listing)
    # The run and its artifact, which opens as text.
    expect(page.locator('tr[data-run-status="succeeded"]')).to_have_count(1)
    with page.expect_popup() as popup:
        page.get_by_role("link", name="Open final_output.md").click()
    expect(popup.value.locator("body")).not_to_be_empty()
    lanes.close()


def test_approve_a_change_prod_task_then_its_paused_tool_call(
    sign_in: Callable[..., Page], api: httpx.Client
) -> None:
    task = create(
        api,
        lane="change-prod",
        title="Scale the api to three replicas",
        instructions=f"Scale the api to 3 replicas\n{WRITE_CHANGE}",
        mutation_level="write_prod",
        scope={"rollback": "scale back to 2 replicas"},
    )
    assert task["status"] == "awaiting_approval"
    page = sign_in("operator")
    page.get_by_role("link", name="Approvals").click()
    mark(page)
    article = page.locator(f'article[data-task-id="{task["id"]}"]')
    expect(article).to_contain_text("scale back to 2 replicas")
    article.get_by_label("Reason for approving").fill("change window CHG-1 is open")
    article.get_by_role("button", name="Approve").click()
    page.wait_for_url("**/console/approvals")
    mark(page)

    # The worker runs it and pauses at the write: the call appears here, live.
    call = page.locator('article[data-approval-kind="tool_call"]', has_text=task["title"])
    expect(call).to_have_count(1)
    paused = wait_for_status(api, task["id"], "awaiting_approval")
    pending = paused["pending_approval"]
    shown = json.loads(call.locator("[data-arguments]").inner_text())
    assert shown == pending["arguments"] == {"name": "change.txt", "content": "replicas: 3"}
    expect(call.locator("[data-sha256]")).to_have_text(pending["arguments_sha256"])
    assert not_reloaded(page)
    call.get_by_label("Reason").fill("replicas: 3 is what was approved")
    call.get_by_role("button", name="Approve call").click()
    page.wait_for_url("**/console/approvals?done=approved")
    done = wait_for_status(api, task["id"], "succeeded")
    assert done["approval"]["by"] == "olga"
    page.goto(f"/console/tasks/{task['id']}")
    expect(page.locator('#timeline li[data-kind="tool_call_approved"]')).to_have_count(1)
    expect(page.locator('#timeline li[data-kind="approved"]')).to_have_count(1)


def test_a_conversation_streams_its_run(sign_in: Callable[..., Page]) -> None:
    page = sign_in("operator")
    page.get_by_role("link", name="Conversations").click()
    page.get_by_text("New conversation").click()
    page.get_by_label("Agent").select_option("incident-analyst")
    page.get_by_label("Title").fill("Checkout latency")
    page.get_by_role("button", name="Open conversation").click()
    page.wait_for_url(re.compile(r"/console/threads/[0-9a-f-]{36}$"))
    page.get_by_label("Message to incident-analyst").fill("Why is checkout slow?")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"/console/runs/[0-9a-f-]{36}$"))
    mark(page)
    expect(page.locator("#run-status")).to_have_attribute("data-status", "completed")
    expect(page.locator('#run-steps li[data-step-kind="model_turn"]')).not_to_have_count(0)
    assert not_reloaded(page)
    page.get_by_role("link", name="← Conversation").click()
    expect(page.locator('.message[data-role="user"]')).to_contain_text("Why is checkout slow?")
    expect(page.locator('.message[data-role="assistant"]')).not_to_have_count(0)


def test_a_viewer_sees_no_action_and_a_forged_one_is_refused(
    sign_in: Callable[..., Page], api: httpx.Client, stack
) -> None:
    waiting = create(
        api,
        lane="change-prod",
        title="Viewer cannot approve this",
        instructions="Restart the api",
        mutation_level="write_prod",
        scope={"rollback": "none needed"},
    )
    page = sign_in("viewer")
    for path in ("/console/tasks", f"/console/tasks/{waiting['id']}", "/console/approvals"):
        page.goto(path)
        expect(page.locator('main form[method="post"], main button[type="submit"]')).to_have_count(
            1 if path == "/console/tasks" else 0  # the filter form's button, no action
        )
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    for action in ("approve", "cancel"):
        forged = page.request.post(
            f"/console/tasks/{waiting['id']}/{action}",
            form={"reason": "forged"},
            headers={"Origin": stack.base_url},
        )
        assert forged.status == 403 and 'data-error-code="forbidden"' in forged.text()
    assert api.get(f"{TASKS}/{waiting['id']}").json()["task"]["status"] == "awaiting_approval"


def test_a_cross_site_form_is_refused(
    sign_in: Callable[..., Page], api: httpx.Client, held
) -> None:
    task = create(
        api,
        lane="change-prod",
        title="Target of a forged form",
        instructions="x",
        mutation_level="write_prod",
        scope={"rollback": "none"},
    )
    page = sign_in("operator")
    # Another origin on the same host (the test's server): the cookie is sent
    # (same-site), but the request does not come from the console's own pages.
    target = f"{page.url.split('/console')[0]}/console/tasks/{task['id']}/cancel"
    page.goto(f"{held.url}/attack?target={target}")
    expect(page.locator("[data-error-code]")).to_have_attribute(
        "data-error-code", "cross_origin_refused"
    )
    assert api.get(f"{TASKS}/{task['id']}").json()["task"]["status"] == "awaiting_approval"


def test_the_session_ends_on_sign_out_and_on_expiry(
    new_context, tokens: Callable[..., str], sign_in: Callable[..., Page]
) -> None:
    page = sign_in("operator")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.goto("/console/tasks")
    assert "/console/sign-in" in page.url

    short = new_context().new_page()
    short.goto("/console/sign-in")
    short.get_by_label("Token").fill(tokens("operator", ttl=3, subject="brief"))
    short.get_by_role("button", name="Sign in").click()
    short.wait_for_url("**/console/tasks")
    # No click: the page signs itself out when the token expires.
    expect(short.get_by_text("Your session expired")).to_be_visible(timeout=10_000)
    assert short.context.cookies() == []


def test_a_title_with_markup_is_shown_as_text(
    sign_in: Callable[..., Page], api: httpx.Client
) -> None:
    title = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    task = create(api, title=title)
    page = sign_in("operator")
    expect(page.locator(f"#task-{task['id']} td.title")).to_have_text(title)
    page.goto(f"/console/tasks/{task['id']}")
    expect(page.locator("h1")).to_have_text(title)
    assert page.evaluate("window.__xss === undefined")


def test_live_updates_pause_while_the_tab_is_hidden(
    sign_in: Callable[..., Page], api: httpx.Client
) -> None:
    page = sign_in("operator")
    region = page.locator("#task-list")
    expect(region).to_have_attribute("data-stream", "open")
    set_visibility(page, "hidden")
    expect(region).to_have_attribute("data-stream", "paused")
    task = create(api, title="Created while nobody looked")
    page.wait_for_timeout(2500)
    expect(page.locator(f"#task-{task['id']}")).to_have_count(0)
    set_visibility(page, "visible")
    expect(page.locator(f"#task-{task['id']}")).to_have_count(1)
    expect(region).to_have_attribute("data-stream", "open")


def test_the_list_polls_while_its_stream_is_down(
    sign_in: Callable[..., Page], api: httpx.Client
) -> None:
    page = sign_in("operator")
    region = page.locator("#task-list")
    expect(region).to_have_attribute("data-stream", "open")
    page.evaluate("document.querySelector('#task-list')._wbSource.close()")
    task = create(api, title="Seen by polling")
    # No notification reaches the page now: the 10 s poll brings the row.
    expect(page.locator(f"#task-{task['id']}")).to_have_count(1, timeout=20_000)


@pytest.fixture(scope="module")
def showcase(api: httpx.Client, conversation: dict[str, str]) -> dict[str, str]:
    """Every screen, with something on it: its name and path."""
    finished = create(api, title="Summarise the checkout incident", instructions="Summarise.")
    wait_for_status(api, finished["id"], "succeeded")
    create(  # something waiting on the approvals screen
        api,
        lane="change-prod",
        title="Rotate the production database password",
        instructions="Rotate it",
        mutation_level="write_prod",
        scope={"rollback": "restore the previous secret version"},
    )
    paused = create(  # and a tool call
        api,
        lane="change-nonprod",
        title="Scale staging to three replicas",
        instructions=f"Scale staging to 3 replicas\n{WRITE_CHANGE}",
        mutation_level="write_nonprod",
    )
    wait_for_status(api, paused["id"], "awaiting_approval")
    return {
        "tasks": "/console/tasks",
        "task": f"/console/tasks/{finished['id']}",
        "approvals": "/console/approvals",
        "conversations": "/console/threads",
        "conversation": f"/console/threads/{conversation['thread_id']}",
        "run": f"/console/runs/{conversation['run_id']}",
        "lanes": "/console/lanes",
    }


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_every_screen_is_accessible_at_both_widths_and_schemes(
    new_context,
    tokens: Callable[..., str],
    showcase: dict[str, str],
    screenshots,
    width: str,
    scheme: str,
) -> None:
    screens = showcase
    context = new_context(viewport=DESKTOP if width == "desktop" else PHONE, color_scheme=scheme)
    page = context.new_page()
    page.goto("/console/sign-in")
    problems = [f"sign-in: {problem}" for problem in serious(page)]
    page.screenshot(path=screenshots / f"sign-in-{width}-{scheme}.png", full_page=True)
    page.get_by_label("Token").fill(tokens("owner"))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/tasks")
    for name, path in screens.items():
        page.goto(path)
        problems += [f"{name}: {problem}" for problem in serious(page)]
        page.screenshot(path=screenshots / f"{name}-{width}-{scheme}.png", full_page=True)
    assert problems == []
