"""`workbench`: api, dispatcher, worker, up (all three), migrate, token."""

import argparse
import asyncio
import signal
import sys

import structlog
import uvicorn

from api.app import create_app
from api.auth import mint_token
from api.settings import ApiSettings
from cli.logs import configure_logging
from ledger.database import create_pool, resolve_database_url
from ledger.errors import ConfigError
from ledger.migrate import apply_migrations
from ledger.policy import load_policy
from ledger.redaction import Redactor

log = structlog.get_logger("workbench")

_NOT_BUILT = "{name}: not built yet; the lane pipeline arrives in a later release. Idling."


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("api", help="serve the REST API")
    commands.add_parser("dispatcher", help="move runnable runs to their lanes")
    commands.add_parser("worker", help="claim and execute runs")
    commands.add_parser("up", help="API, dispatcher and worker in one process (local use)")
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
            asyncio.run(_serve(with_placeholders=False))
        case "up":
            asyncio.run(_serve(with_placeholders=True))
        case "dispatcher" | "worker":
            asyncio.run(_idle_service(args.command))
        case "migrate":
            asyncio.run(_migrate())
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


async def _migrate() -> None:
    pool = await create_pool(await asyncio.to_thread(resolve_database_url), max_size=1)
    try:
        async with pool.acquire() as connection:
            applied = await apply_migrations(connection)
        print(f"applied: {', '.join(applied)}" if applied else "the schema is up to date")
    finally:
        await pool.close()


async def _idle_service(name: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await _placeholder(name, stop)


async def _placeholder(name: str, stop: asyncio.Event) -> None:
    log.warning(_NOT_BUILT.format(name=name))
    await stop.wait()


async def _serve(*, with_placeholders: bool) -> None:
    settings = ApiSettings.from_env()
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            lifespan="on",
            access_log=False,
        )
    )
    done = asyncio.Event()
    placeholders = (
        [asyncio.create_task(_placeholder(name, done)) for name in ("dispatcher", "worker")]
        if with_placeholders
        else []
    )
    banner = asyncio.create_task(_announce(server, settings))
    try:
        await server.serve()  # handles SIGINT/SIGTERM itself
    finally:
        done.set()
        banner.cancel()
        await asyncio.gather(*placeholders, banner, return_exceptions=True)


async def _announce(server: uvicorn.Server, settings: ApiSettings) -> None:
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.05)
    base = f"http://{settings.host}:{settings.port}"
    lines = [f"Agent Workbench API on {base}  (OpenAPI: {base}/openapi.json)"]
    if settings.local_secret and settings.jwt_secret:
        operator = mint_token(
            settings.jwt_secret, subject="local-operator", roles=["operator"], tenant_id="local"
        )
        lines += [
            "Local mode: tokens are signed with a secret kept in the data directory.",
            f"Operator token (tenant 'local', 24 h):\n  {operator}",
            "Mint others with: workbench token --role owner --tenant local --subject you",
            f'Try: curl -H "Authorization: Bearer $TOKEN" {base}/api/agents/workspaces',
        ]
    print("\n".join(lines), flush=True)
