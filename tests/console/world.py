"""The browser tests' fixtures (test_browser.py imports them): one real `workbench up`
on the embedded Postgres, one Chromium (Debian's: browsers cannot be downloaded here),
and a local HTTP server whose answers a test holds back, so a run stays `running` until
the test lets it finish, and which serves a page of another origin for the forgery test.

A new browser context per test keeps cookies apart; the server and the browser are
started once for the module, which keeps the suite fast. Module, not session: Playwright's
sync API keeps an event loop running in the main thread until it stops, and the async
tests that run after this module must not find one."""

import html
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import yaml
from axe_playwright_python.sync_playwright import Axe
from planted_secrets import leaked
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from process_helpers import Workbench

from api.auth import mint_token
from bench.local_server import LocalServer
from ledger.policy import load_policy

CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TENANT = "console-e2e"
EXTERNAL = "external"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
HOLD_SECONDS = 9.0  # under the tool's own 10 s timeout
expect.set_options(timeout=15_000)


class HeldServer(LocalServer):
    """`GET /hold/<key>` answers only once `release(key)` is called (or after
    HOLD_SECONDS): a tool call that stays under way as long as a test needs.
    `GET /attack?target=<url>` is a page of another origin that posts a form there."""

    content_type = "text/html; charset=utf-8"

    def __init__(self) -> None:
        # Before the server starts: a request may arrive as soon as it does.
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        super().__init__()

    def answer(self, path: str) -> bytes:
        if path.startswith("/attack?target="):
            target = html.escape(unquote(path.split("=", 1)[1]))
            return (
                f'<form method="post" action="{target}"><input name="reason" '
                'value="forged"></form><script>document.forms[0].submit()</script>'
            ).encode()
        self.gate(path.rsplit("/", 1)[-1]).wait(HOLD_SECONDS)
        return b"service is healthy"

    def gate(self, key: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(key, threading.Event())

    def release(self, key: str) -> None:
        self.gate(key).set()

    def close(self) -> None:
        for gate in list(self._gates.values()):
            gate.set()
        super().close()


@pytest.fixture(scope="module")
def held() -> Iterator[HeldServer]:
    server = HeldServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workbench]:
    """`workbench up` with the default lanes, `analysis` allowed to reach 127.0.0.1, and
    lane `external`: analysis' settings without a transport, so no worker of the stack
    takes its runs and a test claims them as an external agent (`claim-next`), with a
    lease long enough to outlast a test."""
    root = tmp_path_factory.mktemp("console")
    policy = load_policy()
    lanes = dict(policy.lanes)
    lanes["analysis"] = lanes["analysis"].model_copy(update={"allowed_hosts": ["127.0.0.1"]})
    lanes[EXTERNAL] = lanes["analysis"].model_copy(
        update={"transport": None, "lease_seconds": 600.0, "description": "External agents."}
    )
    lanes_file = root / "lanes.yaml"
    lanes_file.write_text(
        yaml.safe_dump(policy.model_copy(update={"lanes": lanes}).model_dump(mode="json"))
    )
    workbench = Workbench(root / "data", root / "workbench.log", lanes_file=lanes_file)
    workbench.start()
    yield workbench
    code, leftover = workbench.stop()
    assert code == 0 and not leftover, workbench.output()[-3000:]


@pytest.fixture(scope="module")
def secret(stack: Workbench) -> str:
    return (stack.data_dir / "jwt-secret").read_text().strip()


@pytest.fixture(scope="module")
def tokens(stack: Workbench, secret: str) -> Callable[..., str]:
    """A token per role in the test tenant; the operator's minted by `workbench token`
    as a person would, the others directly with the same secret."""
    minted = {"operator": stack.token("operator", TENANT, subject="olga")}

    def token(role: str = "operator", *, ttl: int = 3600, subject: str | None = None) -> str:
        if role in minted and subject is None and ttl == 3600:
            return minted[role]
        return mint_token(
            secret,
            subject=subject or f"{role}-user",
            roles=[role],
            tenant_id=TENANT,
            ttl_seconds=ttl,
        )

    return token


@pytest.fixture(scope="module")
def api(stack: Workbench, tokens: Callable[..., str]) -> Iterator[httpx.Client]:
    """The REST API as the operator, to set up and to check what the console shows."""
    headers = {"Authorization": f"Bearer {tokens('operator')}"}
    with httpx.Client(base_url=stack.base_url, headers=headers, timeout=10.0) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_context(browser: Browser, stack: Workbench) -> Iterator[Callable[..., BrowserContext]]:
    contexts: list[BrowserContext] = []

    def make(**options: Any) -> BrowserContext:
        context = browser.new_context(base_url=stack.base_url, **{"viewport": DESKTOP, **options})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def sign_in(new_context: Callable[..., BrowserContext], tokens: Callable[..., str]):
    """A page signed in through the sign-in form with `role`'s token."""

    def signed_in(role: str = "operator", **options: Any) -> Page:
        page = new_context(**options).new_page()
        page.goto("/console/tasks")
        assert "/console/sign-in" in page.url
        page.get_by_label("Token").fill(tokens(role))
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/console/tasks")
        return page

    return signed_in


def wait_for_status(api: httpx.Client, task_id: str, status: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        task = api.get(f"/api/agents/tasks/{task_id}").json()["task"]
        if task["status"] == status:
            return task
        assert time.monotonic() < deadline, f"{task_id} is {task['status']}, not {status}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def conversation(api: httpx.Client) -> dict[str, str]:
    """A conversation with one finished run, made through the REST API."""
    thread = api.post("/api/v1/threads", json={"agent_type": "runbook-agent", "title": "Failover"})
    thread_id = thread.json()["thread"]["id"]
    run_id = None
    with api.stream(
        "POST",
        f"/api/v1/threads/{thread_id}/runs",
        json={"message": "Which runbook covers a database failover?"},
        timeout=30.0,
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: ") and run_id is None:
                run_id = json.loads(line[6:])["run_id"]
            if line == "event: done":
                break
    assert run_id is not None
    return {"thread_id": thread_id, "run_id": run_id}


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: WORKBENCH_SCREENSHOTS (docs/screenshots/ to refresh
    the committed ones), else a temporary directory."""
    chosen = os.environ.get("WORKBENCH_SCREENSHOTS")
    directory = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def mark(page: Page) -> None:
    """A marker that a reload or navigation would wipe."""
    page.evaluate("window.__notReloaded = true")


def not_reloaded(page: Page) -> bool:
    return page.evaluate("window.__notReloaded === true")


def serious(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page."""
    results = Axe().run(page)
    return [
        f"{violation['id']} ({violation['impact']}): {node['target']}"
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
        for node in violation["nodes"]
    ]


def check_screens(
    new_context: Callable[..., BrowserContext],
    token: str,
    screens: dict[str, str],
    screenshots: Path,
    width: str,
    scheme: str,
) -> None:
    """Signed in with `token` at `width` (desktop or phone) in colour `scheme`, each of
    `screens` (name: path) in turn: no planted secret on it, its screenshot
    `<name>-<width>-<scheme>.png`, and no serious axe-core violation on any of them
    (all of them named at once)."""
    context = new_context(viewport=DESKTOP if width == "desktop" else PHONE, color_scheme=scheme)
    page = context.new_page()
    page.goto("/console/sign-in")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/tasks")
    problems = []
    for name, path in screens.items():
        page.goto(path)
        problems += [f"{name}: {problem}" for problem in serious(page)]
        assert leaked(page.content()) == [], name
        page.screenshot(path=screenshots / f"{name}-{width}-{scheme}.png", full_page=True)
    assert problems == []
