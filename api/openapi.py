"""`/openapi.json`, generated from the endpoint declarations and their pydantic models."""

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.endpoints import AGENT, Endpoint
from api.errors import WORKER_PROTOCOL_PREFIX
from api.schemas import DiagnosticErrorResponse, ErrorResponse, HealthResponse
from ledger.agent_registry import load_agents
from ledger.models import POLICY_NAMES_KEY
from ledger.policy import PolicyConfig

_DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    202: "Accepted: still running; follow the stream named in the body",
    400: "Invalid request",
    401: "Missing or invalid token",
    403: "The caller's role does not allow this",
    404: "Not found (or another tenant's)",
    409: "Conflict: illegal transition for the current status, or an idempotency clash",
    413: "Body larger than 1 MiB",
    502: "The agent run stopped without an answer (failed, blocked or cancelled)",
    503: "Not ready",
}
# The server refuses U+0000 in every request string (Postgres text cannot hold it).
_NO_NUL = r"^[^\u0000]*$"
# Any JSON value without a NUL in its strings or object keys: a free-form request object.
_JSON_WITHOUT_NUL = "JsonWithoutNul"
_PATH_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
_REF_TEMPLATE = "#/components/schemas/{model}"


def _policy_choices(node: Any, policy: PolicyConfig) -> None:
    """Each name field marked with the part of the lanes file it names (or `agents`, the
    agents file beside it) gets that part's names as its enum: the values the server
    accepts under this configuration."""
    if isinstance(node, dict):
        part = node.pop(POLICY_NAMES_KEY, None)
        if part == "agents":
            node["enum"] = load_agents(policy).ids()
        elif part is not None:
            node["enum"] = list(getattr(policy, part))
        for value in node.values():
            _policy_choices(value, policy)
    elif isinstance(node, list):
        for value in node:
            _policy_choices(value, policy)


def _refuse_nul(node: Any, components: dict[str, Any], seen: set[str]) -> None:
    """Says on each request string that it may not hold NUL, and gives each free-form
    object NUL-free keys and values. Strings with a pattern, format or enum of their own
    already leave NUL out."""
    if isinstance(node, list):
        for value in node:
            _refuse_nul(value, components, seen)
        return
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if ref and ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        if name not in seen:
            seen.add(name)
            _refuse_nul(components[name], components, seen)
    if node.get("type") == "string" and not {"pattern", "format", "enum"} & node.keys():
        node["pattern"] = _NO_NUL
    if node.get("type") == "object" and node.get("additionalProperties") is True:
        node["propertyNames"] = {"pattern": _NO_NUL}
        node["additionalProperties"] = {"$ref": _REF_TEMPLATE.format(model=_JSON_WITHOUT_NUL)}
    for key, value in node.items():
        if key != "$ref":
            _refuse_nul(value, components, seen)


def _json_without_nul() -> dict[str, Any]:
    itself = {"$ref": _REF_TEMPLATE.format(model=_JSON_WITHOUT_NUL)}
    return {
        "anyOf": [
            {"type": "string", "pattern": _NO_NUL},
            {"type": ["number", "boolean", "null"]},
            {"type": "array", "items": itself},
            {
                "type": "object",
                "propertyNames": {"pattern": _NO_NUL},
                "additionalProperties": itself,
            },
        ]
    }


def _query_schema(field: dict[str, Any]) -> dict[str, Any]:
    # A query parameter left out is None to the model; on the wire it is never null.
    branches = [b for b in field.get("anyOf", ()) if b != {"type": "null"}]
    if len(branches) == 1:
        field = {**{k: v for k, v in field.items() if k != "anyOf"}, **branches[0]}
    return {k: v for k, v in field.items() if not (k == "default" and v is None)}


def build_openapi(endpoints: list[Endpoint], policy: PolicyConfig) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorResponse, DiagnosticErrorResponse, HealthResponse}
    for item in endpoints:
        if item.response:
            models.add(item.response)
        if item.body:
            models.add(item.body)
        models.update(model for _, model in item.other_responses)
    keyed = [(model, "validation") for model in sorted(models, key=lambda m: m.__name__)]
    refs, schema = models_json_schema(keyed, ref_template=_REF_TEMPLATE)
    components: dict[str, Any] = schema.get("$defs", {})

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    def error(status: int, path: str) -> dict[str, Any]:
        shape = (
            DiagnosticErrorResponse if path.startswith(WORKER_PROTOCOL_PREFIX) else ErrorResponse
        )
        return {
            "description": _DESCRIPTIONS.get(status, "Error"),
            "content": {"application/json": {"schema": ref(shape)}},
        }

    paths: dict[str, dict[str, Any]] = {}
    for item in endpoints:
        path = _PATH_PARAM.sub(r"{\1}", item.path)
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"}
                if kind == "uuid"
                else {"type": "string"},
            }
            for name, kind in _PATH_PARAM.findall(item.path)
        ]
        if item.query:
            query = item.query.model_json_schema(ref_template=_REF_TEMPLATE)
            components.update(query.pop("$defs", {}))
            for name, field in query["properties"].items():
                parameters.append(
                    {"name": name, "in": "query", "required": False, "schema": _query_schema(field)}
                )
        parameters += [parameter.openapi() for parameter in item.reads]
        responses: dict[str, Any] = {}
        # What the shared machinery can answer besides the handler's own statuses: an
        # invalid body or query is 400, an oversized body 413.
        implied = ({400, 413} if item.body else set()) | ({400} if item.query else set())
        for status in sorted(set(item.statuses) | implied):
            if status < 300:
                model = dict(item.other_responses).get(status, item.response)
                content = (
                    {"application/json": {"schema": ref(model)}}
                    if model
                    else {item.raw_media_type: {"schema": item.raw_schema or {"type": "string"}}}
                )
                responses[str(status)] = {"description": _DESCRIPTIONS[status], "content": content}
            else:
                responses[str(status)] = error(status, path)
        operation: dict[str, Any] = {
            "operationId": item.handler.__name__,
            "summary": item.summary,
            "tags": [item.tag],
            "security": [{"agentSession" if item.role == AGENT else "bearer": []}],
            "x-required-role": item.role,
            "parameters": parameters,
            "responses": responses,
        }
        if item.body:
            operation["requestBody"] = {
                # An empty body reads as {}: required only when the model needs a field.
                "required": bool(item.body.model_json_schema().get("required")),
                "content": {"application/json": {"schema": ref(item.body)}},
            }
        paths.setdefault(path, {})[item.method.lower()] = operation

    for probe, summary, unavailable in (
        ("/healthz", "Every long-running loop of the process turns.", "A loop has stalled"),
        ("/readyz", "The database is reachable and migrated.", "Not ready"),
    ):
        paths[probe] = {
            "get": {
                "operationId": probe.strip("/"),
                "summary": summary,
                "tags": ["health"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": ref(HealthResponse)}},
                    },
                    "503": {
                        "description": unavailable,
                        "content": {"application/json": {"schema": ref(HealthResponse)}},
                    },
                },
            }
        }

    components[_JSON_WITHOUT_NUL] = _json_without_nul()
    requests = [
        {key: operation[key] for key in ("parameters", "requestBody") if key in operation}
        for operations in paths.values()
        for operation in operations.values()
    ]
    _refuse_nul(requests, components, {_JSON_WITHOUT_NUL})
    _policy_choices(components, policy)
    _policy_choices(paths, policy)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Agent Workbench API",
            "version": "0.1.0",
            "description": "A governed task queue for AI agents.",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "agentSession": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "wbs_ session credential",
                    "description": "The credential a claim returns with the session it "
                    "binds (claim.session_credential; an in-cluster worker hands it to "
                    "the agent it runs). It works while the claim holds the run: once "
                    "the lease ends it is refused with 401 session_lease_ended.",
                },
            },
        },
        "paths": paths,
    }
