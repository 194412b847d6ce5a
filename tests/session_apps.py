"""The in-process API the conversation route tests talk to (import the fixtures into
the test module): `worked`, on a database of its own with a dispatcher and an sdk worker
executing its runs through their lanes (they act on every runnable row they see), and
`unworked`, on the shared database, where no worker runs and a wait is brief."""

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from conftest import settings_for_tests
from pipeline_helpers import pipeline

from api.app import create_app
from ledger.policy import load_policy
from worker.executors import sdk_executor

__all__ = ["unworked", "worked"]


def asgi_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wb.test")


@pytest.fixture(scope="module")
async def worked(
    make_database: Callable[[], str], artifact_dir
) -> AsyncIterator[httpx.AsyncClient]:
    policy = load_policy()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_ARTIFACT_DIR", str(artifact_dir))
        app = create_app(settings_for_tests(), database_url=make_database(), policy=policy)
        async with (
            app.router.lifespan_context(app),
            asgi_client(app) as client,
            pipeline(app.state.ledger.pool, policy, sdk_executor),
        ):
            yield client


@pytest.fixture(scope="module")
async def unworked(database_url: str, artifact_dir) -> AsyncIterator[httpx.AsyncClient]:
    settings = dataclasses.replace(settings_for_tests(), process_wait_seconds=0.2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_ARTIFACT_DIR", str(artifact_dir))
        app = create_app(settings, database_url=database_url)
        async with app.router.lifespan_context(app), asgi_client(app) as client:
            yield client
