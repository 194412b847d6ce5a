"""`/api/agent/tasks`: the worker protocol over HTTP, for workers that cannot reach
Postgres. Same claims and fences as in-cluster workers: the claim returns a claim token
once; every later call presents it in the `X-Claim-Token` header, and a call from a
worker that no longer holds the run is refused with 409 `fence_rejected`.

The claim also returns the task's agent session, the run's coordination channel and
the session's credential (once): the agent presents it as `Authorization: Bearer
wbs_...` to the routes about itself (`/api/agent/me`, channels, context)."""

from pydantic import BaseModel, ConfigDict

from api.endpoints import Call, Endpoint, Parameter, endpoint
from api.errors import ApiError
from ledger.leases import Fence
from ledger.models import (
    ClaimNextRequest,
    CompleteRequest,
    FailRequest,
    HeartbeatRequest,
    ReleaseRequest,
    Run,
    Task,
)
from ledger.runtime_models import AgentSession, Channel, Lease, lease_record

RUNS = "/api/agent/tasks"
ONE_RUN = RUNS + "/{run_id:uuid}"
_FENCED = (200, 400, 401, 403, 404, 409)
CLAIM_TOKEN = Parameter(
    "X-Claim-Token",
    "header",
    "The claim token the claim returned; a call without the current one is refused.",
    {"type": "string", "minLength": 1},
    required=True,
)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimBody(_Response):
    claim_token: str  # shown once; send it back as X-Claim-Token
    # Shown once: the agent's bearer credential for the routes about itself.
    session_credential: str
    session: AgentSession
    coordination_channel: Channel
    lease: Lease
    run: Run
    task: Task


class ClaimNextResponse(_Response):
    claim: ClaimBody | None  # None: nothing to do right now


class LeaseResponse(_Response):
    lease: Lease


async def _fence(call: Call) -> Fence:
    token = call.request.headers.get("x-claim-token")
    if not token:
        raise ApiError(400, "claim_token_missing", "send the claim token as X-Claim-Token")
    run = await _run(call)
    return Fence(run.id, run.attempt, token)


async def _run(call: Call) -> Run:
    return await call.ledger.get_run(call.actor.tenant_id, call.request.path_params["run_id"])


async def _lease_response(call: Call, task: Task) -> tuple[int, LeaseResponse]:
    run = await _run(call)
    session_id, channel = await call.request.app.state.runtime.run_session_channel(
        call.actor.tenant_id, run.id
    )
    return 200, LeaseResponse(lease=lease_record(task, run, session_id, channel))


@endpoint(
    "POST",
    RUNS + "/claim-next",
    summary="Claims the oldest waiting run in the given "
    "lanes for this worker, with a lease to keep alive by heartbeat. The claim returns "
    "its claim token (send it as X-Claim-Token) and the task's agent session with its "
    "credential, each once: the agent sends the credential as `Authorization: Bearer "
    "wbs_...` to /api/agent/me, /api/agent/context and the channel routes, until the "
    "lease ends (then 401 session_lease_ended).",
    role="worker",
    response=ClaimNextResponse,
    statuses=(200, 400, 401, 403),
    body=ClaimNextRequest,
    tag="worker-protocol",
)
async def claim_next(call: Call[ClaimNextRequest, None]) -> tuple[int, ClaimNextResponse]:
    lanes = call.body.lanes or list(call.ledger.policy.lanes)
    unknown = sorted(set(lanes) - set(call.ledger.policy.lanes))
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown lanes: {unknown}", {"lanes": unknown})
    claim = await call.request.app.state.leases.claim_next(
        tenant_id=call.actor.tenant_id, lanes=lanes, worker=call.actor.subject
    )
    if claim is None:
        return 200, ClaimNextResponse(claim=None)
    grant = claim.grant
    body = ClaimBody(
        claim_token=claim.fence.claim_token,
        session_credential=grant.credential,
        session=grant.session,
        coordination_channel=grant.channel,
        lease=lease_record(claim.task, claim.run, grant.session.id, grant.channel),
        run=claim.run,
        task=claim.task,
    )
    return 200, ClaimNextResponse(claim=body)


@endpoint(
    "POST",
    ONE_RUN + "/heartbeat",
    summary="Extends the lease of a claimed run.",
    role="worker",
    response=LeaseResponse,
    statuses=_FENCED,
    reads=(CLAIM_TOKEN,),
    body=HeartbeatRequest,
    tag="worker-protocol",
)
async def heartbeat(call: Call[HeartbeatRequest, None]) -> tuple[int, LeaseResponse]:
    fence = await _fence(call)
    run = await _run(call)
    lease_seconds = call.ledger.policy.lanes[run.lane].lease_seconds
    await call.request.app.state.leases.heartbeat(
        fence, worker=call.actor.subject, lease_seconds=lease_seconds
    )
    return await _lease_response(
        call, await call.ledger.get_task(call.actor.tenant_id, run.task_id)
    )


@endpoint(
    "POST",
    ONE_RUN + "/complete",
    summary="Completes a claimed run; the task succeeds.",
    role="worker",
    response=LeaseResponse,
    statuses=_FENCED,
    reads=(CLAIM_TOKEN,),
    body=CompleteRequest,
    tag="worker-protocol",
)
async def complete(call: Call[CompleteRequest, None]) -> tuple[int, LeaseResponse]:
    task = await call.request.app.state.leases.complete(
        await _fence(call), worker=call.actor.subject, result=call.body.result
    )
    return await _lease_response(call, task)


@endpoint(
    "POST",
    ONE_RUN + "/fail",
    summary="Fails a claimed run; retried with backoff while "
    "attempts remain and the failure is retryable.",
    role="worker",
    response=LeaseResponse,
    statuses=_FENCED,
    reads=(CLAIM_TOKEN,),
    body=FailRequest,
    tag="worker-protocol",
)
async def fail(call: Call[FailRequest, None]) -> tuple[int, LeaseResponse]:
    task = await call.request.app.state.leases.fail(
        await _fence(call),
        worker=call.actor.subject,
        failure_kind=call.body.failure_kind,
        error=call.body.error,
        retryable=call.body.retryable,
    )
    return await _lease_response(call, task)


@endpoint(
    "POST",
    ONE_RUN + "/release",
    summary="Hands a claimed run back unfinished; it is queued again on the same attempt.",
    role="worker",
    response=LeaseResponse,
    statuses=_FENCED,
    reads=(CLAIM_TOKEN,),
    body=ReleaseRequest,
    tag="worker-protocol",
)
async def release(call: Call[ReleaseRequest, None]) -> tuple[int, LeaseResponse]:
    task = await call.request.app.state.leases.release(
        await _fence(call), worker=call.actor.subject, reason=call.body.reason or "released"
    )
    return await _lease_response(call, task)


ENDPOINTS: list[Endpoint] = [claim_next, heartbeat, complete, fail, release]
