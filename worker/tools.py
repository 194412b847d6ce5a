"""Built-in tools a lane may allow its agents.

Each tool has a mutation level. A lane lists the tools its agents get, and tool calls
above its `tool_approval_above` level pause the run for an operator (the SDK's
`needs_approval`). Every call that runs records its verdict in the trace (a
`tool_verdict` event with the call's id); artifact writes go through the run's fence
like every other worker write. The agent runtime's tools (channels, the context bundle,
spawning helpers) are in `worker/runtime_tools.py`, under the same rules.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from agents import FunctionTool, function_tool
from agents.tool_context import ToolContext

from ledger.leases import NewArtifact
from ledger.policy import Lane
from worker.context import RunContext
from worker.execution import flush_spans

log = structlog.get_logger(__name__)

MAX_READ_CHARS = 20_000


@dataclass(frozen=True)
class ToolSpec:
    name: str
    mutation_level: str
    function: Callable[..., Awaitable[str]]


async def read_artifact(ctx: ToolContext[RunContext], name: str) -> str:
    """Read an artifact of this task by name (the newest one with that name).

    Args:
        name: The artifact's name, e.g. "final_output.md".
    """
    run = ctx.context
    await verdict(ctx, "read_only", {"name": name})
    found = await run.leases.artifact_named(run.task.id, name)
    if found is None:
        return f"no artifact named {name}"
    _, storage_ref = found
    content = await asyncio.to_thread(run.store.get, storage_ref)
    return content.decode("utf-8", errors="replace")[:MAX_READ_CHARS]


async def write_artifact(ctx: ToolContext[RunContext], name: str, content: str) -> str:
    """Store a text artifact for this task.

    Args:
        name: The artifact's file name.
        content: Its text.
    """
    run = ctx.context
    await verdict(ctx, "propose", {"name": name, "size": len(content)})
    # Artifacts are downloadable: secrets the agent wrote are redacted like everywhere else.
    cleaned = run.leases.redactor.text(content)
    return await store_artifact(run, name, "text/plain", cleaned.encode(), {"kind": "tool_output"})


async def http_get(ctx: ToolContext[RunContext], url: str) -> str:
    """Fetch a URL with HTTP GET; only hosts the lane allows are reachable.

    Args:
        url: An http(s) URL.
    """
    run = ctx.context
    host = urlsplit(url).hostname or ""
    allowed = host in run.lane.allowed_hosts
    await verdict(ctx, "read_only", {"host": host}, decision="allow" if allowed else "deny")
    if not allowed:
        return f"refused: host {host or '(none)'} is not allowed in lane {run.task.lane}"
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        response = await client.get(url)
    return f"HTTP {response.status_code}\n{response.text[:MAX_READ_CHARS]}"


async def propose_change(ctx: ToolContext[RunContext], summary: str, change: str) -> str:
    """Propose a change for a human to apply; it is stored as an artifact, not applied.

    Args:
        summary: One line saying what the change does.
        change: The change itself (a diff, a command, a configuration).
    """
    run = ctx.context
    await verdict(ctx, "propose", {"summary": summary})
    body = json.dumps({"summary": summary, "change": change}, indent=2).encode()
    return await store_artifact(
        run,
        "change_proposal.json",
        "application/json",
        body,
        {"kind": "change_proposal", "summary": summary},
    )


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec("read_artifact", "read_only", read_artifact),
        ToolSpec("write_artifact", "propose", write_artifact),
        ToolSpec("http_get", "read_only", http_get),
        ToolSpec("propose_change", "propose", propose_change),
    )
}


def tools_for(
    run: RunContext,
    *,
    names: list[str],
    lane: Lane | None = None,
    specs: dict[str, ToolSpec] = TOOLS,
) -> list[FunctionTool]:
    """The tools `names` as a lane governs them (the run's lane unless given), each
    needing approval when above the lane's approval level; `specs` are where they are
    found (the agent runtime's are in `worker/runtime_tools.py`)."""
    lane = lane or run.lane
    tools = []
    for name in names:
        spec = specs[name]
        needs_approval = lane.tool_approval_above is not None and run.policy.exceeds(
            spec.mutation_level, lane.tool_approval_above
        )
        tools.append(_function_tool(spec, needs_approval))
    return tools


@cache
def _function_tool(spec: ToolSpec, needs_approval: bool) -> FunctionTool:
    # Built once per process: function_tool derives the schema from the signature and
    # docstring (a pydantic model, a docstring parse, a JSON schema: about 1 ms a tool,
    # half the CPU of an offline agent run). The tool keeps no state of a run; each call
    # reaches its run through the context, as with the SDK's module-level tools.
    return function_tool(spec.function, needs_approval=needs_approval)


async def verdict(
    ctx: ToolContext[RunContext], level: str, details: dict[str, Any], decision: str = "allow"
) -> None:
    """The call's verdict, a fenced write before the tool does anything: a worker that
    lost the run cannot act for it."""
    run, tool, call_id = ctx.context, ctx.tool_name, ctx.tool_call_id
    pending = run.task.pending_approval or {}
    if pending.get("call_id") == call_id and pending.get("decision") == "approved":
        decision = "approved"
    # The spans finished so far hold the model's call: written first, the trace reads
    # call, verdict, result.
    await flush_spans(run, log)
    await run.leases.trace(
        run.claim.fence,
        worker=run.worker,
        kind="tool_verdict",
        message=f"{tool} ({level}): {decision}",
        data={
            "call_id": call_id,
            "tool": tool,
            "mutation_level": level,
            "decision": decision,
            **details,
        },
    )


async def store_artifact(
    run: RunContext, name: str, media_type: str, content: bytes, metadata: dict[str, Any]
) -> str:
    stored = await asyncio.to_thread(run.store.put, run.task.tenant_id, run.task.id, name, content)
    await run.leases.add_artifact(
        run.claim.fence,
        worker=run.worker,
        artifact=NewArtifact(
            name, media_type, stored, {**metadata, "attempt": run.claim.fence.attempt}
        ),
    )
    return f"stored {name} ({stored.size_bytes} bytes, sha256 {stored.sha256[:12]})"
