"""Model providers by name, driven through the real Agents SDK against a real local HTTP server.

The `compatible` and `azure` providers talk HTTP to `OpenAICompatibleServer` (Starlette on
uvicorn, 127.0.0.1): real OpenAI client, real Chat Completions requests, JSON and SSE, real
tool round trips. Nothing reaches the internet: the SDK's default trace exporter is replaced.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel
from agents.tracing import get_trace_provider, set_trace_processors
from azure.core.credentials import AccessToken
from event_stream import assert_tool_calls_pair_with_results, parse_events
from openai import AsyncOpenAI
from openai.types.responses import ResponseTextDeltaEvent
from openai_compatible_server import OpenAICompatibleServer
from structlog.testing import capture_logs

from ledger.models import AgentConfig
from ledger.repository import Actor
from worker import providers
from worker.offline_model import OfflineModelProvider
from worker.providers import (
    AZURE_SCOPE,
    DEFAULT_AZURE_API_VERSION,
    DEFAULT_OPENAI_MODEL,
    ProviderNotConfigured,
    aclose_providers,
    model_name_for,
    model_provider_for,
)

MODEL = "qwen2.5-7b-instruct"
KEY = "sk-compatible-test-key"
OPENAI_KEY = "sk-openai-key-that-must-stay-home"
ADD_TASK = 'Add two numbers\n#call add {"a": 2, "b": 3}'

PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_DEFAULT_MODEL",
    "WORKBENCH_OPENAI_MODEL",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_API_VERSION",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "WORKBENCH_COMPATIBLE_BASE_URL",
    "WORKBENCH_COMPATIBLE_API_KEY",
    "WORKBENCH_COMPATIBLE_MODEL",
)


@pytest.fixture(autouse=True)
def no_trace_export() -> Iterator[None]:
    """Replace the SDK's default OpenAI trace exporter so no test can reach the internet."""
    # The SDK has no getter for the installed processors; read them to restore exactly these.
    previous = list(get_trace_provider()._multi_processor._processors)  # type: ignore[attr-defined]
    set_trace_processors([])
    try:
        yield
    finally:
        set_trace_processors(previous)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    await aclose_providers()


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer(models=[MODEL], api_key=KEY) as running:
        yield running


@pytest.fixture
def compatible_env(server: OpenAICompatibleServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_BASE_URL", server.base_url)
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_MODEL", MODEL)
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_API_KEY", KEY)


def adding_agent() -> tuple[Agent[Any], list[tuple[int, int]]]:
    """An agent with a real `add` tool, and the list of calls the tool really received."""
    calls: list[tuple[int, int]] = []

    @function_tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        calls.append((a, b))
        return a + b

    agent = Agent(name="adder", instructions="Use the tools you are asked to use.", tools=[add])
    return agent, calls


def run_config(name: str) -> RunConfig:
    # `model=` as well: the SDK derives default model settings from the model name it resolves.
    return RunConfig(model_provider=model_provider_for(name), model=model_name_for(name))


def assert_tool_round_trip(server: OpenAICompatibleServer, *, stream: bool) -> None:
    first, second = server.chat_requests
    for request in (first, second):
        assert request.model == MODEL
        assert request.authorization == f"Bearer {KEY}"
        assert request.tool_names == ["add"]
        assert request.stream is stream
        # Settings for the SDK's default (GPT-5) model must not leak to a compatible server.
        assert "reasoning_effort" not in request.body
        assert "verbosity" not in request.body
    # The second request carries the tool call and the tool's real result back to the model.
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "tool"]
    call = second.messages[2]["tool_calls"][0]
    assert call["function"] == {"name": "add", "arguments": '{"a":2,"b":3}'}
    assert second.messages[3] == {"role": "tool", "tool_call_id": call["id"], "content": "5"}


async def test_compatible_provider_runs_a_tool_over_http(
    server: OpenAICompatibleServer, compatible_env: None
) -> None:
    agent, calls = adding_agent()

    result = await Runner.run(agent, ADD_TASK, run_config=run_config("compatible"))

    assert calls == [(2, 3)]
    assert result.final_output == "compatible: add -> 5"
    assert_tool_round_trip(server, stream=False)
    usage = result.context_wrapper.usage
    assert usage.requests == 2
    assert usage.input_tokens > 0
    assert usage.output_tokens > 0


async def test_compatible_provider_streams_server_sent_events(
    server: OpenAICompatibleServer, compatible_env: None
) -> None:
    agent, calls = adding_agent()

    result = Runner.run_streamed(agent, ADD_TASK, run_config=run_config("compatible"))
    deltas: list[str] = []
    item_kinds: list[str] = []
    async for event in result.stream_events():
        if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent):
            deltas.append(event.data.delta)
        elif event.type == "run_item_stream_event":
            item_kinds.append(event.item.type)

    assert calls == [(2, 3)]
    assert result.final_output == "compatible: add -> 5"
    # The text arrived in several SSE chunks, one per word.
    assert len(deltas) > 1
    assert "".join(deltas) == result.final_output
    assert item_kinds == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    assert_tool_round_trip(server, stream=True)


async def test_provider_alone_defaults_to_the_configured_model(
    server: OpenAICompatibleServer, compatible_env: None
) -> None:
    agent, _ = adding_agent()

    result = await Runner.run(
        agent, "Say hello", run_config=RunConfig(model_provider=model_provider_for("compatible"))
    )

    assert result.final_output == "compatible: Say hello"
    assert [request.model for request in server.chat_requests] == [MODEL]


async def test_compatible_without_key_never_sends_the_openai_key(
    server: OpenAICompatibleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.api_key = None
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_BASE_URL", server.base_url)
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_MODEL", MODEL)
    agent, _ = adding_agent()

    result = await Runner.run(agent, "Hello there", run_config=run_config("compatible"))

    assert result.final_output == "compatible: Hello there"
    (request,) = server.chat_requests
    assert request.authorization == f"Bearer {providers.COMPATIBLE_PLACEHOLDER_KEY}"
    assert all(OPENAI_KEY not in value for value in request.headers.values())


class FakeEntraCredential:
    """Stands in for `DefaultAzureCredential` (async); the bearer token plumbing stays real."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self.closed = False

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("entra-access-token", int(time.time()) + 3600)

    async def close(self) -> None:
        self.closed = True


async def test_azure_provider_sends_an_entra_token_to_the_deployment(
    server: OpenAICompatibleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.api_key = "entra-access-token"
    credential = FakeEntraCredential()
    monkeypatch.setattr(providers, "_azure_credential", lambda: credential)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.origin)
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "gpt-4o-prod")
    # An API key in the environment must not displace the Entra token.
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key-not-to-be-used")
    agent, calls = adding_agent()

    result = await Runner.run(agent, ADD_TASK, run_config=run_config("azure"))

    assert calls == [(2, 3)]
    assert result.final_output == "compatible: add -> 5"
    requests = server.chat_requests
    assert len(requests) == 2
    for request in requests:
        assert request.path == "/openai/deployments/gpt-4o-prod/chat/completions"
        assert request.query == {"api-version": DEFAULT_AZURE_API_VERSION}
        assert request.authorization == "Bearer entra-access-token"
        assert "api-key" not in request.headers
        assert request.model == "gpt-4o-prod"
    assert credential.scopes[0] == (AZURE_SCOPE,)

    await aclose_providers()
    assert credential.closed


def test_azure_with_the_real_default_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only construction is exercised here: a token needs a real identity.
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://example-resource.openai.azure.com/")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "gpt-4o-prod")
    if importlib.util.find_spec("aiohttp") is None:
        # azure.identity.aio cannot build its HTTP pipeline without aiohttp.
        with pytest.raises(ProviderNotConfigured, match="install aiohttp"):
            model_provider_for("azure")
    else:
        provider = model_provider_for("azure")
        assert isinstance(provider.get_model(None), OpenAIChatCompletionsModel)


@pytest.mark.parametrize(
    ("name", "env", "message"),
    [
        ("openai", {}, "model provider openai is not configured here: set OPENAI_API_KEY"),
        (
            "compatible",
            {},
            "model provider compatible is not configured here: "
            "set WORKBENCH_COMPATIBLE_BASE_URL, WORKBENCH_COMPATIBLE_MODEL",
        ),
        (
            "compatible",
            {"WORKBENCH_COMPATIBLE_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-x"},
            "model provider compatible is not configured here: set WORKBENCH_COMPATIBLE_MODEL",
        ),
        (
            "azure",
            {},
            "model provider azure is not configured here: "
            "set AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_DEPLOYMENT",
        ),
        (
            "azure",
            {"AZURE_OPENAI_DEPLOYMENT": "gpt-4o-prod", "AZURE_OPENAI_API_KEY": "k"},
            "model provider azure is not configured here: set AZURE_OPENAI_ENDPOINT",
        ),
        (
            "anthropic",
            {},
            "model provider anthropic is not known here (known: offline, openai, azure, "
            "compatible)",
        ),
    ],
)
def test_unconfigured_provider_says_what_to_set(
    name: str, env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(ProviderNotConfigured) as raised:
        model_provider_for(name)
    assert str(raised.value) == message
    with pytest.raises(ProviderNotConfigured):
        model_name_for(name)


def test_blank_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "  ")
    with pytest.raises(ProviderNotConfigured, match="set OPENAI_API_KEY"):
        model_provider_for("openai")


def test_offline_provider_needs_nothing() -> None:
    assert isinstance(model_provider_for("offline"), OfflineModelProvider)
    assert model_name_for("offline") is None


def test_openai_provider_uses_the_responses_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    assert model_name_for("openai") == DEFAULT_OPENAI_MODEL
    model = model_provider_for("openai").get_model(None)
    assert isinstance(model, OpenAIResponsesModel)
    assert model.model == DEFAULT_OPENAI_MODEL

    monkeypatch.setenv("WORKBENCH_OPENAI_MODEL", "gpt-4.1")
    assert model_name_for("openai") == "gpt-4.1"
    assert model_provider_for("openai").get_model(None).model == "gpt-4.1"  # type: ignore[attr-defined]
    # An agent's own model still wins.
    assert model_provider_for("openai").get_model("o4-mini").model == "o4-mini"  # type: ignore[attr-defined]


def test_providers_are_cached_per_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_MODEL", MODEL)
    first = model_provider_for("compatible")
    assert model_provider_for("compatible") is first
    first_client = first.get_model(None)._client  # type: ignore[attr-defined]
    assert model_provider_for("compatible").get_model(None)._client is first_client  # type: ignore[attr-defined]

    monkeypatch.setenv("WORKBENCH_COMPATIBLE_API_KEY", "another-key")
    rekeyed = model_provider_for("compatible")
    assert rekeyed is not first
    assert model_provider_for("compatible") is rekeyed

    monkeypatch.setenv("WORKBENCH_COMPATIBLE_MODEL", "other-model")
    assert model_provider_for("compatible") is not rekeyed


def test_secrets_are_neither_logged_nor_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_BASE_URL", "https://user:hunter2@llm.internal/v1?k=s")
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_MODEL", MODEL)
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_API_KEY", KEY)

    with capture_logs() as logs:
        shown = [repr(model_provider_for(name)) for name in ("openai", "compatible")]

    assert [entry["event"] for entry in logs] == ["model_provider_created"] * 2
    assert logs[1]["endpoint"] == "https://llm.internal/v1"
    text = repr(logs) + "".join(shown) + repr(providers._cache)
    for secret in (OPENAI_KEY, KEY, "hunter2"):
        assert secret not in text


@pytest.mark.parametrize(
    ("provider", "path", "span_kind"),
    [
        ("openai", "/v1/responses", "span.response"),
        ("compatible", "/v1/chat/completions", "span.generation"),
    ],
)
async def test_a_task_on_a_served_model_streams_its_text_and_tool_calls(
    provider: str,
    path: str,
    span_kind: str,
    server: OpenAICompatibleServer,
    compatible_env: None,
    monkeypatch: pytest.MonkeyPatch,
    http: Any,
    auth: Any,
    new_task: Any,
) -> None:
    # `openai` speaks the Responses API, `compatible` Chat Completions: both must reach
    # the stream as text, not as an id and usage.
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    instructions = 'Note it\n#call write_artifact {"name": "n.txt", "content": "x"}'
    task = (await new_task(model_provider=provider, instructions=instructions))["task"]
    tasks = f"/api/agents/tasks/{task['id']}"

    run = await http.post(f"{tasks}/run", headers=auth())

    assert run.json()["status"] == "succeeded", run.json()["task"]["terminal_reason"]
    assert [request.path for request in server.requests] == [path, path]
    events = parse_events((await http.get(f"{tasks}/events", headers=auth())).text)
    # The answer is streamed: its chunks make up the turn's text, the last one final.
    texts = [event["data"] for event in events if event["event"] == "text"]
    text = "".join(chunk["content"] for chunk in texts)
    assert [chunk["is_final"] for chunk in texts][-1:] == [True]
    assert text.startswith("compatible: write_artifact -> stored n.txt (1 bytes")
    assert_tool_calls_pair_with_results(events)
    traces = (await http.get(f"{tasks}/traces", headers=auth())).json()["traces"]
    turns = [t["data"] for t in traces if t["kind"] == span_kind]
    assert [turn.get("text") for turn in turns] == [None, text]
    assert [turn.get("streamed") for turn in turns] == [None, True]
    assert turns[0]["input"][-1]["content"] == instructions


async def test_server_lists_models_and_refuses_a_wrong_key(server: OpenAICompatibleServer) -> None:
    async with AsyncOpenAI(base_url=server.base_url, api_key=KEY) as client:
        models = await client.models.list()
        assert [model.id for model in models.data] == [MODEL]
    async with AsyncOpenAI(base_url=server.base_url, api_key="wrong", max_retries=0) as client:
        with pytest.raises(Exception, match="Incorrect API key"):
            await client.models.list()


async def test_server_reports_a_tool_it_was_not_offered(
    server: OpenAICompatibleServer, compatible_env: None
) -> None:
    agent = Agent(name="toolless", instructions="")
    result = await Runner.run(agent, ADD_TASK, run_config=run_config("compatible"))
    assert result.final_output == "compatible: tool 'add' is not offered (offered: none)"


async def test_a_thread_runs_agent_config_reaches_the_model(
    server: OpenAICompatibleServer,
    compatible_env: None,
    app: Any,
    http: Any,
    auth: Any,
    tenant: str,
) -> None:
    """The client's model, temperature and tools_enabled are applied to the turn."""
    created = await http.post(
        "/api/v1/threads", json={"agent_type": "runbook-agent"}, headers=auth()
    )
    thread_id = created.json()["thread"]["id"]
    config = AgentConfig(
        provider="compatible", model="runbooks-small", temperature=0.2, tools_enabled=False
    )
    message = 'Which runbook covers failover?\n#call read_artifact {"name": "failover.md"}'
    actor = Actor("alice", tenant, "operator")
    task = (await app.state.ledger.start_run(actor, thread_id, message, config)).task

    run = await http.post(f"/api/agents/tasks/{task.id}/run", headers=auth())

    assert run.json()["status"] == "succeeded", run.json()["task"]["terminal_reason"]
    [request] = server.chat_requests
    assert (request.model, request.body["temperature"], request.tool_names) == (
        "runbooks-small",
        0.2,
        [],
    )
