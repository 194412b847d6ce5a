"""`/api/agent/soul` and `/api/agent/soul/validate`: the calling session's agent's soul
document, and the check of one before it is used (`agentdefs/soul.py`). What comes
back has its secrets redacted, like everything else; the digest is of what was sent."""

import hashlib

from agentdefs import soul
from agentdefs.soul import Diagnostic, Soul
from api.endpoints import AGENT, Call, Endpoint, endpoint
from api.routes.agent_channels import CREDENTIAL, runtime
from api.runtime_schemas import SoulConfigProvenance, SoulResponse, SoulValidateRequest
from ledger.redaction import Redactor


def _response(parsed: Soul, agent_name: str, redactor: Redactor) -> SoulResponse:
    front = parsed.frontmatter
    shown = front.model_validate(redactor.value(front.model_dump()))
    body = redactor.text(parsed.body)
    diagnostics = [
        d.model_copy(update={"message": redactor.text(d.message)}) for d in parsed.diagnostics
    ]
    if shown != front or body != parsed.body:
        diagnostics.append(
            Diagnostic(
                code="secret_redacted",
                message="the document holds what looks like a secret; it is redacted here "
                "and would reach the agent's instructions as written",
                severity="warning",
                source_path=parsed.source_path,
            )
        )
    limits = parsed.limits
    truncated = parsed.valid and parsed.present and soul.project(parsed)[1]
    return SoulResponse(
        agent_name=agent_name,
        enabled=True,  # souls are always on, with the built-in limits
        present=parsed.present,
        valid=parsed.valid,
        active=parsed.present and parsed.valid,
        validation_status=parsed.validation_status,
        source_path=parsed.source_path,
        digest=parsed.digest,
        snapshot_id=parsed.digest,
        revision_id=front.version,
        frontmatter=shown,
        body=body,
        truncated=truncated,
        diagnostics=diagnostics,
        limits=limits,
        config_provenance=SoulConfigProvenance(
            enabled=True,
            max_body_bytes=limits.max_body_bytes,
            context_projection_bytes=limits.context_projection_bytes,
            source="default",
            digest="sha256:" + hashlib.sha256(limits.model_dump_json().encode()).hexdigest(),
        ),
    )


@endpoint(
    "GET",
    "/api/agent/soul",
    summary="The soul document of the calling session's agent, as it runs with it: its "
    "frontmatter (role, tone, principles, constraints, memory_policy, collaboration, "
    "version, tags), body, digest and diagnostics; present=false for an agent without "
    "one. A valid soul is projected into the agent's instructions and each run's trace "
    "records its digest. " + CREDENTIAL,
    role=AGENT,
    response=SoulResponse,
    statuses=(200, 401),
    tag="agent-runtime",
)
async def get_soul(call: Call) -> tuple[int, SoulResponse]:
    agents = runtime(call)
    name = call.session.session.agent_name
    return 200, _response(agents.agents.soul_of(name), name, agents.redactor)


@endpoint(
    "POST",
    "/api/agent/soul/validate",
    summary="Checks a soul document: 200 with valid=true and its digest, or valid=false "
    "and a diagnostic (code, field or section, line, column, severity) for each "
    "problem: a field outside the allowed ones (forbidden_field names where it belongs, "
    "unsupported_field), a wrong type, a reserved section, malformed YAML, a document or "
    "body over its size limit. " + CREDENTIAL,
    role=AGENT,
    response=SoulResponse,
    statuses=(200, 400, 401),
    body=SoulValidateRequest,
    tag="agent-runtime",
)
async def validate_soul(call: Call[SoulValidateRequest, None]) -> tuple[int, SoulResponse]:
    parsed = soul.parse(call.body.content, source_path=call.body.source_path)
    agents = runtime(call)
    return 200, _response(parsed, call.session.session.agent_name, agents.redactor)


ENDPOINTS: list[Endpoint] = [get_soul, validate_soul]
