"""The API's settings, read once from the environment."""

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ledger.database import data_dir

MAX_BODY_BYTES = 1024 * 1024
# How long `POST /api/v1/agents/process` waits for its run to stop before it answers 202
# with the stream to follow instead: a worker's offline run takes well under a second,
# a real model's a few seconds; past this a client is better served by the stream.
PROCESS_WAIT_SECONDS = 20.0
# The longest a long-polling channel receive (`recv?wait=true`) waits, whatever its
# wait_seconds asks (which may be up to ledger.channels.MAX_WAIT_SECONDS).
RECV_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class ApiSettings:
    host: str
    port: int
    jwt_secret: str | None
    jwks_url: str | None
    jwt_audience: str | None
    jwt_issuer: str | None
    # True when the secret was made for local use (no DATABASE_URL, none configured):
    # the CLI then prints a ready operator token.
    local_secret: bool
    # WORKBENCH_PROCESS_WAIT_SECONDS; see PROCESS_WAIT_SECONDS.
    process_wait_seconds: float = PROCESS_WAIT_SECONDS
    # WORKBENCH_RECV_WAIT_SECONDS; see RECV_WAIT_SECONDS.
    recv_wait_seconds: float = RECV_WAIT_SECONDS

    @classmethod
    def from_env(cls) -> "ApiSettings":
        secret = os.environ.get("WORKBENCH_JWT_SECRET") or None
        jwks_url = os.environ.get("WORKBENCH_JWKS_URL") or None
        local_secret = False
        if not secret and not jwks_url:
            if os.environ.get("DATABASE_URL"):
                raise SystemExit(
                    "WORKBENCH_JWT_SECRET or WORKBENCH_JWKS_URL must be set when DATABASE_URL "
                    "is: replicas must agree on how tokens are verified"
                )
            secret, local_secret = local_jwt_secret(data_dir()), True
        return cls(
            host=os.environ.get("WORKBENCH_HOST", "127.0.0.1"),
            port=int(os.environ.get("WORKBENCH_PORT", "8000")),
            jwt_secret=secret,
            jwks_url=jwks_url,
            jwt_audience=os.environ.get("WORKBENCH_JWT_AUDIENCE") or None,
            jwt_issuer=os.environ.get("WORKBENCH_JWT_ISSUER") or None,
            local_secret=local_secret,
            process_wait_seconds=float(
                os.environ.get("WORKBENCH_PROCESS_WAIT_SECONDS", PROCESS_WAIT_SECONDS)
            ),
            recv_wait_seconds=float(
                os.environ.get("WORKBENCH_RECV_WAIT_SECONDS", RECV_WAIT_SECONDS)
            ),
        )


def local_jwt_secret(directory: Path) -> str:
    """The signing secret for local use, made once and kept (mode 0600) beside the
    embedded database, so tokens minted earlier keep working after a restart."""
    path = directory / "jwt-secret"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()
