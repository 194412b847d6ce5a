"""Runner health as an operator reads it before trusting agents to run: the SDK and its
version, each provider configured or not (never its key), whether a configured model
API answers (a real probe against a closed port and against one that answers, with no
credential sent), the workers seen per lane, and the same as gauges in /metrics."""

import asyncio
import importlib.metadata
import socket
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

HEALTH = "/api/agents/runner-health"
KEY = "sk-proj-Hunter2Hunter2Hunter2"


class AnsweringServer:
    """A model API stand-in: answers every request 401, as a real one does without a
    key, and keeps what it was sent."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


@pytest.fixture
async def answering() -> AsyncIterator[tuple[AnsweringServer, int]]:
    model_api = AnsweringServer()
    server = await asyncio.start_server(model_api.handle, "127.0.0.1", 0)
    async with server:
        yield model_api, server.sockets[0].getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: bound, then closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def no_remote_providers(monkeypatch) -> pytest.MonkeyPatch:
    for name in (
        "OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_DEPLOYMENT",
        "WORKBENCH_COMPATIBLE_BASE_URL",
        "WORKBENCH_COMPATIBLE_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _compatible_at(monkeypatch, url: str) -> None:
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_BASE_URL", url)
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_MODEL", "llama-3.1-8b")
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_API_KEY", KEY)


async def _health(http, auth) -> dict:
    response = await http.get(HEALTH, headers=auth("viewer"))
    assert response.status_code == 200, response.text
    assert KEY not in response.text
    return response.json()


def _providers(health: dict) -> dict[str, dict]:
    return {provider["name"]: provider for provider in health["runner_health"]["providers"]}


async def _gauges(http) -> dict[tuple[str, tuple], float]:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert KEY not in response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_the_sdk_and_the_offline_provider(http, auth, no_remote_providers) -> None:
    health = await _health(http, auth)
    sdk = health["runner_health"]["sdk"]
    assert sdk == {
        "available": True,
        "version": importlib.metadata.version("openai-agents"),
        "error": None,
    }
    providers = _providers(health)
    offline = providers["offline"]
    assert (offline["configured"], offline["probe"], offline["reachable"]) == (
        True,
        "in_process",
        True,
    )
    openai = providers["openai"]
    assert (openai["configured"], openai["reachable"], openai["probe"]) == (
        False,
        None,
        "not_configured",
    )
    assert "OPENAI_API_KEY" in openai["detail"]
    assert (health["default_model_provider"], health["default_model"]) == ("offline", None)

    gauges = await _gauges(http)
    assert gauges[("workbench_runner_sdk_available", ())] == 1
    assert gauges[("workbench_runner_provider_configured", (("provider", "offline"),))] == 1
    assert gauges[("workbench_runner_model_reachable", (("provider", "offline"),))] == 1
    assert gauges[("workbench_runner_provider_configured", (("provider", "openai"),))] == 0


async def test_a_closed_model_api_is_unreachable(
    http, auth, no_remote_providers, closed_port
) -> None:
    _compatible_at(no_remote_providers, f"http://app:pw-hunter2@127.0.0.1:{closed_port}/v1?k=1")
    compatible = _providers(await _health(http, auth))["compatible"]
    assert compatible["configured"] is True
    assert compatible["probe"] == "http"
    assert compatible["reachable"] is False
    assert compatible["error"] == "ConnectError"
    # Shown, and probed, without its credentials or query.
    assert compatible["endpoint"] == f"http://127.0.0.1:{closed_port}/v1"
    gauges = await _gauges(http)
    assert gauges[("workbench_runner_provider_configured", (("provider", "compatible"),))] == 1
    assert gauges[("workbench_runner_model_reachable", (("provider", "compatible"),))] == 0


async def test_an_answering_model_api_is_reachable(
    http, auth, no_remote_providers, answering
) -> None:
    model_api, port = answering
    _compatible_at(no_remote_providers, f"http://127.0.0.1:{port}/v1")
    compatible = _providers(await _health(http, auth))["compatible"]
    assert (compatible["reachable"], compatible["status_code"]) == (True, 401)
    assert compatible["default_model"] == "llama-3.1-8b"
    [request] = model_api.requests  # the scrape below reuses this answer
    assert request.startswith(b"GET /v1/models ")
    assert b"authorization" not in request.lower()
    assert KEY.encode() not in request
    gauges = await _gauges(http)
    assert gauges[("workbench_runner_model_reachable", (("provider", "compatible"),))] == 1


async def test_workers_seen_per_lane(http, auth, new_task) -> None:
    await new_task()
    claimed = await http.post(
        "/api/agent/tasks/claim-next", json={"lanes": ["analysis"]}, headers=auth("worker")
    )
    assert claimed.json()["claim"] is not None, claimed.text
    health = (await _health(http, auth))["runner_health"]
    lanes = {lane["lane"]: lane for lane in health["lanes"]}
    assert set(lanes) == {"analysis", "change-nonprod", "change-prod"}
    assert lanes["analysis"]["workers"] >= 1
    assert lanes["analysis"]["last_heartbeat_at"] is not None
    assert health["worker_window_seconds"] == 60
    assert "live lease" in health["workers_source"]
    gauges = await _gauges(http)
    assert gauges[("workbench_lane_workers", (("lane", "analysis"),))] >= 1
