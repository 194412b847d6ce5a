"""Model providers by name: which LLM backend a task's agent talks to.

A task names its provider (``Task.model_provider``; the names are declared under ``providers:``
in the lanes file and the policy decides which a lane may use). This module turns the name into
an Agents SDK ``ModelProvider`` configured from the environment:

``offline``
    ``OfflineModelProvider``: deterministic, in-process, no key. The default.
``openai``
    The OpenAI API (Responses API). ``OPENAI_API_KEY`` (required),
    ``WORKBENCH_OPENAI_MODEL`` (default ``gpt-4.1-mini``); ``OPENAI_BASE_URL`` is honoured.
``azure``
    Azure OpenAI over Chat Completions with an Entra ID token from ``DefaultAzureCredential``
    (workload identity, managed identity, Azure CLI, ...). ``AZURE_OPENAI_ENDPOINT`` and
    ``AZURE_OPENAI_DEPLOYMENT`` (required), ``AZURE_OPENAI_API_VERSION`` (default
    ``2024-10-21``, the latest dated GA inference version).
``compatible``
    Any OpenAI-compatible server (vLLM, Ollama, LiteLLM) over Chat Completions.
    ``WORKBENCH_COMPATIBLE_BASE_URL`` and ``WORKBENCH_COMPATIBLE_MODEL`` (required),
    ``WORKBENCH_COMPATIBLE_API_KEY`` (optional; many servers accept any key).

Use both halves of the answer::

    RunConfig(model_provider=model_provider_for(name), model=model_name_for(name))

The provider alone already defaults to the configured model, but the SDK picks *default model
settings* from the model name it resolves: without ``model=`` it assumes its own default
(a GPT-5 model) and sends ``reasoning_effort``/``verbosity``, which Chat Completions servers
and older deployments reject.

Clients are created once per process for each provider name and configuration and then reused
(one connection pool each); a changed environment gets a new client. They belong to the event
loop that first uses them: a worker runs one loop, and ``aclose_providers()`` releases them at
shutdown. An unusable configuration raises ``ProviderNotConfigured`` whose message says what to
set; it never contains a secret, and nothing here logs one.

The SDK is imported lazily, like in ``worker.executors``: importing this module (and catching
``ProviderNotConfigured``) works where the SDK is not installed.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import structlog

if TYPE_CHECKING:
    from agents.models.interface import Model, ModelProvider
    from openai import AsyncOpenAI

log = structlog.get_logger(__name__)

PROVIDERS = ("offline", "openai", "azure", "compatible")

DEFAULT_OPENAI_MODEL = "gpt-4.1-mini"
DEFAULT_AZURE_API_VERSION = "2024-10-21"
AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"
# Sent as the bearer key to compatible servers configured without one. Passing a key explicitly
# also stops the OpenAI client from falling back to OPENAI_API_KEY, which must never be sent to
# a third-party endpoint.
COMPATIBLE_PLACEHOLDER_KEY = "workbench-no-key"


class ProviderNotConfigured(Exception):
    """The named provider cannot be used with this process's configuration.

    The message says what to set and never contains a secret. The executor records the task as
    ``blocked`` with it.
    """


@dataclass(frozen=True)
class _Settings:
    name: str
    model: str | None = None
    base_url: str | None = field(default=None, repr=False)
    api_version: str | None = None
    secret: str | None = field(default=None, repr=False)

    def cache_key(self) -> tuple[str, str]:
        # A digest rather than the values: URLs may carry credentials too, and the key must be
        # safe to print or inspect.
        values = (self.model, self.base_url, self.api_version, self.secret)
        return (self.name, hashlib.sha256(repr(values).encode()).hexdigest())


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _require(provider: str, values: dict[str, str | None]) -> None:
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise ProviderNotConfigured(
            f"model provider {provider} is not configured here: set {', '.join(missing)}"
        )


def _settings(name: str) -> _Settings:
    if name == "offline":
        return _Settings(name)
    if name == "openai":
        key = _env("OPENAI_API_KEY")
        _require(name, {"OPENAI_API_KEY": key})
        return _Settings(
            name,
            model=_env("WORKBENCH_OPENAI_MODEL") or DEFAULT_OPENAI_MODEL,
            base_url=_env("OPENAI_BASE_URL"),
            secret=key,
        )
    if name == "azure":
        endpoint = _env("AZURE_OPENAI_ENDPOINT")
        deployment = _env("AZURE_OPENAI_DEPLOYMENT")
        _require(name, {"AZURE_OPENAI_ENDPOINT": endpoint, "AZURE_OPENAI_DEPLOYMENT": deployment})
        return _Settings(
            name,
            model=deployment,
            base_url=endpoint,
            api_version=_env("AZURE_OPENAI_API_VERSION") or DEFAULT_AZURE_API_VERSION,
        )
    if name == "compatible":
        base_url = _env("WORKBENCH_COMPATIBLE_BASE_URL")
        model = _env("WORKBENCH_COMPATIBLE_MODEL")
        _require(
            name,
            {"WORKBENCH_COMPATIBLE_BASE_URL": base_url, "WORKBENCH_COMPATIBLE_MODEL": model},
        )
        return _Settings(
            name, model=model, base_url=base_url, secret=_env("WORKBENCH_COMPATIBLE_API_KEY")
        )
    raise ProviderNotConfigured(
        f"model provider {name} is not known here (known: {', '.join(PROVIDERS)})"
    )


def model_name_for(name: str) -> str | None:
    """The model (Azure: deployment) that provider ``name`` runs, or None for ``offline``.

    Raises ``ProviderNotConfigured`` exactly when ``model_provider_for(name)`` would for a
    missing setting.
    """
    return _settings(name).model


# Where the OpenAI client sends requests when OPENAI_BASE_URL is unset.
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


def model_api_url(name: str) -> str | None:
    """Where provider ``name``'s model API is, without user info, query or fragment: safe
    to show, and to probe (no credential goes with it). None for ``offline``, which runs
    in process. Raises ``ProviderNotConfigured`` exactly when ``model_name_for`` does."""
    settings = _settings(name)
    if name == "offline":
        return None
    return _redacted_url(settings.base_url or OPENAI_DEFAULT_BASE_URL)


# The name the offline model answers under (it serves every name it is given).
OFFLINE_MODEL_NAME = "offline"
# Where each provider's model name is configured, and its default when unset.
_MODEL_SETTINGS: dict[str, tuple[str, str | None]] = {
    "openai": ("WORKBENCH_OPENAI_MODEL", DEFAULT_OPENAI_MODEL),
    "azure": ("AZURE_OPENAI_DEPLOYMENT", None),
    "compatible": ("WORKBENCH_COMPATIBLE_MODEL", None),
}


def default_model_name(name: str) -> str | None:
    """The model provider ``name`` runs when none is named, from the same variables as
    ``model_name_for`` but needing none of the provider's credentials: what a process
    that holds no key (the API) can know. None when the variable is unset and has no
    default (azure, compatible), or for a provider not known here."""
    if name == "offline":
        return OFFLINE_MODEL_NAME
    if name not in _MODEL_SETTINGS:
        return None
    variable, default = _MODEL_SETTINGS[name]
    return _env(variable) or default


@dataclass
class _Entry:
    provider: ModelProvider
    close: Callable[[], Coroutine[Any, Any, None]] | None


_cache: dict[tuple[str, str], _Entry] = {}
_cache_lock = threading.Lock()


def model_provider_for(name: str) -> ModelProvider:
    """The SDK model provider for provider ``name``, configured from the environment.

    Cached per process by name and configuration. Raises ``ProviderNotConfigured``.
    """
    settings = _settings(name)
    key = settings.cache_key()
    with _cache_lock:
        entry = _cache.get(key)
        if entry is None:
            entry = _create(settings)
            _cache[key] = entry
            log.info(
                "model_provider_created",
                provider=name,
                model=settings.model,
                endpoint=_redacted_url(settings.base_url),
            )
        return entry.provider


async def aclose_providers() -> None:
    """Close every cached client and credential and forget them (worker shutdown, tests)."""
    with _cache_lock:
        entries = list(_cache.values())
        _cache.clear()
    for entry in entries:
        if entry.close is not None:
            await entry.close()


def _redacted_url(url: str | None) -> str | None:
    """The URL without user info, query or fragment: what is safe to log."""
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _create(settings: _Settings) -> _Entry:
    if settings.name == "offline":
        from worker.offline_model import OfflineModelProvider

        return _Entry(OfflineModelProvider(), None)

    from openai import AsyncOpenAI

    if settings.name == "openai":
        client = AsyncOpenAI(api_key=settings.secret, base_url=settings.base_url)
        return _Entry(_default_model_provider(client, settings, use_responses=True), client.close)

    if settings.name == "compatible":
        client = AsyncOpenAI(
            api_key=settings.secret or COMPATIBLE_PLACEHOLDER_KEY, base_url=settings.base_url
        )
        return _Entry(_default_model_provider(client, settings, use_responses=False), client.close)

    # azure: _settings admits no other name.
    from openai import AsyncAzureOpenAI

    assert settings.base_url is not None
    try:
        credential = _azure_credential()
    except ImportError as error:
        raise ProviderNotConfigured(
            f"model provider azure is not usable here: azure.identity.aio needs a missing "
            f"package ({error}); install aiohttp"
        ) from error
    from azure.identity.aio import get_bearer_token_provider

    client = AsyncAzureOpenAI(
        azure_endpoint=settings.base_url,
        api_version=settings.api_version,
        azure_ad_token_provider=get_bearer_token_provider(credential, AZURE_SCOPE),
    )

    async def close() -> None:
        try:
            await client.close()
        finally:
            await credential.close()

    return _Entry(_default_model_provider(client, settings, use_responses=False), close)


def _azure_credential() -> Any:
    """The async Entra ID credential for Azure OpenAI (tests replace this function)."""
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()


def _default_model_provider(
    client: AsyncOpenAI, settings: _Settings, *, use_responses: bool
) -> ModelProvider:
    from agents.models.openai_provider import OpenAIProvider

    inner = OpenAIProvider(openai_client=client, use_responses=use_responses)
    return _configured_provider_class()(settings.name, settings.model, inner)


@cache
def _configured_provider_class() -> Callable[[str, str | None, ModelProvider], ModelProvider]:
    # Defined on first use so that importing this module does not import the SDK.
    from agents.models.interface import ModelProvider

    class ConfiguredModelProvider(ModelProvider):
        """The SDK's ``OpenAIProvider`` over one shared client; an agent without a model of its
        own gets the configured model instead of the SDK's default one."""

        def __init__(self, name: str, model: str | None, inner: ModelProvider) -> None:
            self.name = name
            self.model = model
            self._inner = inner

        def get_model(self, model_name: str | None) -> Model:
            return self._inner.get_model(model_name or self.model)

        async def aclose(self) -> None:
            # The client is shared by every run in the process; aclose_providers() closes it.
            await self._inner.aclose()

        def __repr__(self) -> str:
            return f"<ConfiguredModelProvider {self.name} model={self.model!r}>"

    return ConfiguredModelProvider
