"""How a route is declared: one `Endpoint` says its path, the role it needs, its body,
query and response models, and the statuses it answers. The same declaration drives
authentication, validation and `/openapi.json`, so the document cannot drift from
what the code does."""

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.errors import ApiError
from ledger import fastjson
from ledger.policy import Role
from ledger.repository import Actor, Ledger

BodyT = TypeVar("BodyT", bound=BaseModel)
QueryT = TypeVar("QueryT", bound=BaseModel)


@dataclass(frozen=True)
class Call(Generic[BodyT, QueryT]):
    """What a handler gets: the request, who is calling, and the validated input."""

    request: Request
    actor: Actor
    ledger: Ledger
    body: BodyT
    query: QueryT

    def path_param(self, name: str) -> str:
        return str(self.request.path_params[name])


# A handler answers with a status and a model, or (for raw content) a ready Response.
Handler = Callable[[Call[Any, Any]], Awaitable[tuple[int, BaseModel] | Response]]


@dataclass(frozen=True)
class Parameter:
    """A header or query parameter a handler reads from the request itself."""

    name: str
    location: Literal["header", "query"]
    description: str
    schema: dict[str, Any]
    required: bool = False

    def openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.location,
            "required": self.required,
            "description": self.description,
            "schema": self.schema,
        }


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    role: Role
    response: type[BaseModel] | None  # None: raw bytes (application/octet-stream)
    statuses: tuple[int, ...]
    handler: Handler
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    tag: str = "tasks"
    # Headers and query parameters the handler reads itself, for the API description.
    reads: tuple["Parameter", ...] = ()
    # The content type of a raw (response=None) answer, and the schema of its content
    # (for an event stream: of each event's data).
    raw_media_type: str = "application/octet-stream"
    raw_schema: dict[str, Any] | None = None
    # Success statuses whose body is not `response` (a 202 that says where to follow).
    other_responses: tuple[tuple[int, type[BaseModel]], ...] = ()

    def route(self) -> Route:
        return Route(self.path, self._asgi, methods=[self.method], name=self.handler.__name__)

    async def _asgi(self, request: Request) -> Response:
        principal = await request.app.state.authenticator.authenticate(
            request.headers.get("authorization")
        )
        request.state.principal = principal
        actor = principal.actor_for(self.role)
        _refuse_nul(request)
        call = Call(
            request=request,
            actor=actor,
            ledger=request.app.state.ledger,
            body=await _parse_body(request, self.body) if self.body else None,
            query=_validate(self.query, dict(request.query_params), "query")
            if self.query
            else None,
        )
        result = await self.handler(call)
        if isinstance(result, Response):
            return result
        status, payload = result
        # Serialised by pydantic's own encoder: no intermediate dict, no json.dumps.
        return Response(
            payload.model_dump_json(), status_code=status, media_type="application/json"
        )


def endpoint(
    method: str,
    path: str,
    *,
    summary: str,
    role: Role,
    response: type[BaseModel] | None,
    statuses: tuple[int, ...],
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    tag: str = "tasks",
    reads: tuple["Parameter", ...] = (),
    raw_media_type: str = "application/octet-stream",
    raw_schema: dict[str, Any] | None = None,
    other_responses: tuple[tuple[int, type[BaseModel]], ...] = (),
) -> Callable[[Handler], Endpoint]:
    def declare(handler: Handler) -> Endpoint:
        return Endpoint(
            method,
            path,
            summary,
            role,
            response,
            statuses,
            handler,
            body,
            query,
            tag,
            reads,
            raw_media_type,
            raw_schema,
            other_responses,
        )

    return declare


def _refuse_nul(request: Request) -> None:
    # Postgres text cannot hold U+0000: refuse it as bad input rather than fail storing it.
    values = [*map(str, request.path_params.values()), *request.query_params.values()]
    if any("\x00" in value for value in values):
        raise ApiError(400, "invalid_request", "the request contains a NUL character")


async def _parse_body(request: Request, model: type[BodyT]) -> BodyT:
    raw = await request.body()
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = fastjson.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ApiError(400, "invalid_json", f"the body is not valid JSON: {error}") from error
        # Only an escape can put one in (a raw NUL is not valid JSON), so only a body that
        # has one is walked; `\\u0000`, an escaped backslash, is not one.
        if b"\\u0000" in raw.lower() and _holds_nul(data):
            raise ApiError(400, "invalid_request", "the body contains a NUL character (\\u0000)")
    return _validate(model, data, "body")


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _validate(model: type[BodyT], data: Any, where: str) -> BodyT:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        # Only location, message and type: the offending input may itself be a secret.
        problems = [
            {
                "location": [where, *map(str, problem["loc"])],
                "message": problem["msg"],
                "type": problem["type"],
            }
            for problem in error.errors(include_url=False, include_input=False)
        ]
        raise ApiError(
            400, "invalid_request", f"the request {where} is not valid", {"problems": problems}
        ) from error


def validate_query(model: type[QueryT], params: dict[str, str]) -> QueryT:
    """Query parameters checked as a route's `query` model is: a 400 `invalid_request`
    naming each problem (the console validates its filters with the API's models)."""
    return _validate(model, params, "query")


def validate_body(model: type[BodyT], data: Any) -> BodyT:
    """A request body checked as a route's `body` model is (a 400 `invalid_request`)."""
    return _validate(model, data, "body")
