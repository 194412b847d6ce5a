"""Secrets planted in tasks never leave the backend, when the tasks run through the
deployed pipeline: `workbench api`, `workbench dispatcher` and `workbench worker
--executor sdk` (the real agent runner with the offline model, so tool calls, spans and
artifacts are produced by the worker process, not by the API's in-process /run).

tests/e2e/test_running_system.py::test_secrets_never_leave_the_backend covers the API
alone. Here a secret in a task's title, instructions, scope, a tool call's arguments
(one of them held for approval) and the approval's reason must not appear in any
response, trace (the answer's streamed text included), live event stream, artifact
listing or content, ledger row, stored file, or line logged by any of the three
processes. tests/worker/test_streaming.py cuts each form at every character.
"""

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from fault_helpers import Cluster, running_cluster
from planted_secrets import SECRETS as FORM_SECRETS
from planted_secrets import WRITTEN_FORMS, forms_text, leaked
from process_helpers import TASKS, auth, fast_lanes, get_task, kinds, wait_until

SECRET_API_KEY = "sk-live-SECRET123456789012345"
SECRET_PASSWORD = "hunter2hunter2"
SECRET_BEARER = "abcdefghijklmnopqrstuvwxyz"
SECRET_TOKEN = "ghp_TOPSECRETTOKEN0123456789"
SECRETS = (SECRET_API_KEY, SECRET_PASSWORD, SECRET_BEARER, SECRET_TOKEN, *FORM_SECRETS)
# The forms but the last (a key block cut short is redacted to the end of the text, which
# would take the directives after it along).
FORMS = forms_text(WRITTEN_FORMS[:-1])
LEDGER_TABLES = ("tasks", "runs", "trace_events", "artifacts", "lane_messages", "lane_dead_letters")


class _LeakyPage(BaseHTTPRequestHandler):
    """A page that answers with every form of secret: what a tool brings back."""

    def do_GET(self) -> None:
        body = FORMS.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def leaky_page() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LeakyPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/runbook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def cluster(tmp_path: Path, make_database: Callable[[], str]) -> Iterator[Cluster]:
    # Leases long enough for an agent run on a busy machine: this test is about what is
    # written, not about rescues.
    lanes = fast_lanes(tmp_path, lease_seconds=30, dispatch_timeout_seconds=60)
    config = yaml.safe_load(lanes.read_text())
    config["lanes"]["analysis"]["allowed_hosts"] = ["127.0.0.1"]  # the leaky page
    lanes.write_text(yaml.safe_dump(config))
    with running_cluster(tmp_path, make_database(), lanes) as cluster:
        yield cluster


def call(tool: str, **arguments: str) -> str:
    """An offline-model directive: the agent calls `tool` with `arguments`."""
    return f"#call {tool} {json.dumps(arguments)}"


class EventStream:
    """The task's live SSE stream, read on a thread of its own until it ends."""

    def __init__(self, base_url: str, token: str, task_id: str) -> None:
        self.text = ""
        self._thread = threading.Thread(
            target=self._read, args=(base_url, token, task_id), daemon=True
        )
        self._thread.start()

    def _read(self, base_url: str, token: str, task_id: str) -> None:
        url = f"{base_url}{TASKS}/{task_id}/events"
        with httpx.Client(timeout=120.0) as client:
            self.text = client.get(url, headers=auth(token)).text

    def wait(self) -> str:
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the event stream did not end"
        return self.text


def test_secrets_never_leave_the_backend_through_the_pipeline(
    cluster: Cluster, leaky_page: str
) -> None:
    token = cluster.token()
    headers = auth(token)
    cluster.dispatcher()
    worker = cluster.worker("w-secrets", concurrency=2, executor="sdk")
    texts: dict[str, str] = {}

    with httpx.Client(base_url=cluster.api.base_url, timeout=30.0) as client:
        analysis = client.post(
            TASKS,
            json={
                "lane": "analysis",
                "title": f"Rotate {SECRET_API_KEY}",
                "instructions": f"use Bearer {SECRET_BEARER} to call the API\n"
                + call(
                    "write_artifact",
                    name="notes.txt",
                    content=f"db_password={SECRET_PASSWORD} and key {SECRET_API_KEY}\n{FORMS}",
                )
                + "\n"
                + call("http_get", url=leaky_page)
                + f"\n{FORMS}",
                "scope": {
                    "api_key": SECRET_API_KEY,
                    "nested": {
                        "db_password": SECRET_PASSWORD,
                        "credentials": [{"token": SECRET_TOKEN}],
                    },
                    "connection": f"Server=db;Password={SECRET_PASSWORD}",
                    "note": f"github_token={SECRET_TOKEN}",
                },
            },
            headers=headers,
        )
        assert analysis.status_code == 201, analysis.text
        change = client.post(
            TASKS,
            json={
                "lane": "change-nonprod",
                "mutation_level": "write_nonprod",
                "title": "Scale app-7",
                "instructions": "Scale app-7\n"
                + call("write_artifact", name="plan.txt", content=f"api_key: {SECRET_API_KEY}"),
                "scope": {"deploy_token": SECRET_TOKEN, "forms": FORMS},
            },
            headers=headers,
        )
        assert change.status_code == 201, change.text
        ids = {"analysis": analysis.json()["task"]["id"], "change": change.json()["task"]["id"]}
        texts |= {"create analysis": analysis.text, "create change": change.text}
        stream = EventStream(cluster.api.base_url, token, ids["analysis"])

        paused = wait_until(
            lambda: (
                (t := get_task(client, token, ids["change"]))["status"] == "awaiting_approval" and t
            ),
            60,
            "the change task paused for approval",
        )
        assert paused["pending_approval"]["tool"] == "write_artifact"
        texts["paused task"] = json.dumps(paused)
        approved = client.post(
            f"{TASKS}/{ids['change']}/approve",
            json={"reason": f"ok, token={SECRET_TOKEN} password={SECRET_PASSWORD}"},
            headers=headers,
        )
        assert approved.status_code == 200, approved.text
        texts["approve"] = approved.text

        for name, task_id in ids.items():
            done = wait_until(
                lambda task_id=task_id: (
                    (t := get_task(client, token, task_id))["status"] == "succeeded" and t
                ),
                60,
                f"the {name} task succeeded through the pipeline",
            )
            url = f"{TASKS}/{task_id}"
            texts[f"{name} task"] = json.dumps(done)
            traces = client.get(f"{url}/traces", headers=headers)
            texts[f"{name} traces"] = traces.text
            # The worker really ran the agent: its model turns and tool call are spans, and
            # its answer was streamed (the answer quotes the instructions' first line).
            trace_kinds = kinds(traces.json()["traces"])
            assert {"span.generation", "span.function", "text.delta"} <= set(trace_kinds), (
                trace_kinds
            )
            listing = client.get(f"{url}/artifacts", headers=headers)
            texts[f"{name} artifacts"] = listing.text
            written = "notes.txt" if name == "analysis" else "plan.txt"
            names = sorted(a["name"] for a in listing.json()["artifacts"])
            assert names == sorted(["final_output.md", written])
            for artifact in listing.json()["artifacts"]:
                content = client.get(artifact["download_url"], headers=headers)
                assert content.status_code == 200
                texts[f"{name} {artifact['name']}"] = content.text
        texts["task list"] = client.get(TASKS, headers=headers).text
        texts["event stream"] = stream.wait()
        assert "event: done" in texts["event stream"]
        assert "event: tool_result" in texts["event stream"]
        assert "event: text" in texts["event stream"]

    # The redacted forms did arrive: what was stored is the placeholder, not nothing.
    assert "[redacted]" in texts["analysis notes.txt"]
    assert "[redacted]" in texts["change plan.txt"]
    # The page's text did reach the agent, redacted: the final answer quotes the result.
    assert "- http_get: HTTP 200" in texts["analysis final_output.md"]
    for where, text in texts.items():
        assert leaked(text) == [], f"leaked in the {where}"
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked in the {where}"

    for table in LEDGER_TABLES:
        rows = cluster.sql(f"SELECT t::text AS row FROM {table} t")  # noqa: S608 - constants
        for row in rows:
            for secret in SECRETS:
                assert secret not in row["row"], f"{secret!r} stored in {table}: {row['row']}"
    for path in (cluster.root / "artifacts").rglob("*"):
        if path.is_file():
            stored = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in stored, f"{secret!r} stored in {path}"

    # Every process's log, the worker's included, with proof each one logged about the
    # tasks (so an empty or uncaptured log cannot pass).
    logs = cluster.logs()
    assert '"kind":"created"' in logs["api"]
    assert '"event":"dispatched"' in logs["dispatcher"]
    assert all(task_id in worker.output() for task_id in ids.values())
    for process, output in logs.items():
        for secret in (*SECRETS, token):
            assert secret not in output, f"{secret[:12]}... leaked in the {process} log"
