"""`workbench`: api, dispatcher, worker, up (all three), migrate, token."""

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any

import asyncpg
import structlog
import uvicorn
import uvloop

from api.app import create_app
from api.auth import mint_token
from api.settings import ApiSettings
from cli.logs import configure_logging
from cli.stacks import dump_stacks_on_sigusr1
from dispatcher.service import DispatcherConfig, run_dispatcher
from lanes.registry import LaneRegistry
from ledger.artifact_store import artifact_store_from_env
from ledger.database import close_pool, create_pool, resolve_database_url
from ledger.errors import ConfigError
from ledger.migrate import apply_migrations
from ledger.policy import PolicyConfig, load_policy
from ledger.redaction import Redactor
from metrics.liveness import serve_metrics_and_health
from worker.executors import EXECUTORS, load_sdk
from worker.service import Worker, WorkerConfig

log = structlog.get_logger("workbench")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("api", help="serve the REST API")
    dispatcher = commands.add_parser(
        "dispatcher", help="send due runs to their lanes; rescue expired leases"
    )
    worker = commands.add_parser("worker", help="claim and execute runs from lanes")
    up = commands.add_parser("up", help="API, dispatcher and a worker in one process (local use)")
    for command in (dispatcher, worker):
        command.add_argument(
            "--metrics-port",
            type=int,
            default=int(os.environ["WORKBENCH_METRICS_PORT"])
            if os.environ.get("WORKBENCH_METRICS_PORT")
            else None,
            help="serve /metrics and the liveness probe /healthz on this port (default: "
            "$WORKBENCH_METRICS_PORT, else off; the API serves both on its own port)",
        )
    for command in (worker, up):
        command.add_argument(
            "--lanes",
            default=os.environ.get("WORKBENCH_WORKER_LANES", ""),
            help="comma-separated lanes (default: $WORKBENCH_WORKER_LANES, else every "
            "lane with a transport)",
        )
        command.add_argument(
            "--concurrency", type=int, default=4, help="runs executed at once (default 4)"
        )
        command.add_argument(
            "--executor",
            choices=sorted(EXECUTORS),
            default=os.environ.get("WORKBENCH_EXECUTOR", "sdk"),
            help="sdk runs agents; noop and sleep exercise the queue itself "
            "(default: $WORKBENCH_EXECUTOR, else sdk)",
        )
    commands.add_parser("migrate", help="apply pending database migrations and exit")
    token = commands.add_parser("token", help="mint an HS256 token for local use")
    token.add_argument(
        "--role",
        action="append",
        required=True,
        choices=["viewer", "operator", "owner", "worker"],
        help="repeat for several roles",
    )
    token.add_argument("--tenant", required=True)
    token.add_argument("--subject", default="local-user")
    token.add_argument("--ttl", type=int, default=86_400, help="seconds the token is valid")
    args = parser.parse_args(argv)

    try:
        policy = load_policy()
    except ConfigError as error:
        sys.exit(f"workbench: {error.message}")
    configure_logging(Redactor(policy.secret_keys))
    match args.command:
        case "api":
            _run(_until_signal(lambda stop: _serve_api(stop)))
        case "dispatcher":
            _serve_metrics(args.metrics_port)
            _run(_until_signal(lambda stop: _dispatch(policy, stop)))
        case "worker":
            _serve_metrics(args.metrics_port)
            _run(_until_signal(lambda stop: _work(policy, args, stop)))
        case "up":
            _run(_until_signal(lambda stop: _up(policy, args, stop)))
        case "migrate":
            _run(_migrate())
        case "token":
            settings = ApiSettings.from_env()
            if not settings.jwt_secret:
                sys.exit("tokens come from your identity provider when WORKBENCH_JWKS_URL is set")
            print(
                mint_token(
                    settings.jwt_secret,
                    subject=args.subject,
                    roles=args.role,
                    tenant_id=args.tenant,
                    ttl_seconds=args.ttl,
                )
            )


def _run(main: Coroutine[Any, Any, None]) -> None:
    # What start-up loaded (modules, configuration, the SDK's classes) lives as long as
    # the process: frozen, the collector stops walking it. And a young collection every
    # 10,000 net allocations, not 700: in the pipeline benchmark the collector took 6 %
    # of the API's CPU, 5 % of the worker's and 7 % of `up`'s with the sdk executor;
    # after, under 0.1 %, 0 % and 1 %. Cycles are still collected; the sdk worker's
    # memory benchmark shows what it costs in RSS.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 50)
    # uvloop: the event loop in C, a good share less CPU per request, claim and
    # completion than the default loop (uvicorn likewise picks httptools for HTTP).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def _serve_metrics(port: int | None) -> None:
    if port is not None:
        # A thread of its own: a scrape or probe never waits on the event loop.
        serve_metrics_and_health(port)
        log.info("metrics_serving", port=port)


async def _until_signal(service: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `service` until SIGTERM or SIGINT sets its stop event; it then finishes what
    it holds and returns, and the process exits 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    dump_stacks_on_sigusr1(loop)
    await service(stop)


async def _migrate() -> None:
    pool = await create_pool(await asyncio.to_thread(resolve_database_url), max_size=1)
    try:
        async with pool.acquire() as connection:
            applied = await apply_migrations(connection)
        print(f"applied: {', '.join(applied)}" if applied else "the schema is up to date")
    finally:
        await close_pool(pool)


@contextlib.asynccontextmanager
async def _database(max_size: int) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(await asyncio.to_thread(resolve_database_url), max_size=max_size)
    try:
        async with pool.acquire() as connection:
            await apply_migrations(connection)
        yield pool
    finally:
        await close_pool(pool)


async def _dispatch(policy: PolicyConfig, stop: asyncio.Event) -> None:
    async with _database(max_size=4) as pool:
        await run_dispatcher(pool, policy, stop, DispatcherConfig())


async def _worker(pool: asyncpg.Pool, policy: PolicyConfig, args: argparse.Namespace) -> Worker:
    if args.executor == "sdk":
        await asyncio.to_thread(load_sdk)
    lanes = [lane for lane in args.lanes.split(",") if lane] or LaneRegistry(
        pool, policy
    ).configured()
    config = WorkerConfig(lanes=lanes, concurrency=args.concurrency)
    return Worker(pool, policy, config, EXECUTORS[args.executor], artifact_store_from_env())


def _worker_pool_size(concurrency: int) -> int:
    # A run holds a connection only for one statement batch at a time (claims and
    # completions are batched, heartbeats are short), so a few connections serve many
    # runs; one per run would exhaust Postgres's max_connections across a fleet.
    return min(concurrency, 16) + 4


async def _work(policy: PolicyConfig, args: argparse.Namespace, stop: asyncio.Event) -> None:
    async with _database(max_size=_worker_pool_size(args.concurrency)) as pool:
        await (await _worker(pool, policy, args)).run(stop)


async def _up(policy: PolicyConfig, args: argparse.Namespace, stop: asyncio.Event) -> None:
    async with _database(max_size=_worker_pool_size(args.concurrency) + 2) as pool:
        await asyncio.gather(
            _serve_api(stop),
            run_dispatcher(pool, policy, stop, DispatcherConfig()),
            (await _worker(pool, policy, args)).run(stop),
        )


class _Server(uvicorn.Server):
    # Signals are handled once, by _until_signal, for every part of the process; uvicorn
    # would otherwise take them over and re-raise them at exit (exit code -15, not 0).
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_api(stop: asyncio.Event) -> None:
    settings = ApiSettings.from_env()
    app = create_app(settings)
    server = _Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            lifespan="on",
            access_log=False,
        )
    )

    async def stop_when_asked() -> None:
        await stop.wait()
        app.state.stopping.set()  # the console's live streams end
        server.should_exit = True

    watcher = asyncio.create_task(stop_when_asked())
    banner = asyncio.create_task(_announce(server, settings))
    try:
        await server.serve()
    finally:
        for helper in (watcher, banner):
            helper.cancel()
        await asyncio.gather(watcher, banner, return_exceptions=True)


async def _announce(server: uvicorn.Server, settings: ApiSettings) -> None:
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.05)
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        f"Agent Workbench API on {base}  (OpenAPI: {base}/openapi.json)",
        f"Console: {base}/console  (sign in with a token)",
    ]
    if settings.local_secret and settings.jwt_secret:
        operator = mint_token(
            settings.jwt_secret, subject="local-operator", roles=["operator"], tenant_id="local"
        )
        lines += [
            "Local mode: tokens are signed with a secret kept in the data directory.",
            f"Operator token (tenant 'local', 24 h):\n  {operator}",
            f"Mint others with: {sys.argv[0]} token --role owner --tenant local --subject you",
            f'Try: curl -H "Authorization: Bearer $TOKEN" {base}/api/agents/workspaces',
        ]
    print("\n".join(lines), flush=True)
