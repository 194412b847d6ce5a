"""`/openapi.json` describes every route, and real responses match their schemas."""

import jsonschema
import pytest

from api.app import ENDPOINTS

TASKS = "/api/agents/tasks"


@pytest.fixture(scope="module")
async def document(http):
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


async def test_every_route_is_documented(document) -> None:
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    for item in ENDPOINTS:
        path = item.path.replace(":uuid", "")
        assert (path, item.method.lower()) in documented, item.path
    assert ("/healthz", "get") in documented and ("/readyz", "get") in documented
    assert len([p for p in document["paths"] if p.startswith("/api/agents/")]) >= 13


def _validate(document, path: str, method: str, status: int, body) -> None:
    operation = document["paths"][path][method]
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    jsonschema.validate(body, {**schema, "components": document["components"]})


async def test_responses_match_their_schemas(document, http, auth, new_task) -> None:
    created = await new_task()
    _validate(document, TASKS, "post", 201, created)
    task_id = created["task"]["id"]
    one = f"{TASKS}/{{task_id}}"
    checks = [
        ("get", TASKS, TASKS, 200),
        ("get", one, f"{TASKS}/{task_id}", 200),
        ("get", one + "/traces", f"{TASKS}/{task_id}/traces", 200),
        ("get", one + "/artifacts", f"{TASKS}/{task_id}/artifacts", 200),
        ("post", one + "/dispatch", f"{TASKS}/{task_id}/dispatch", 200),
        ("post", one + "/run", f"{TASKS}/{task_id}/run", 200),
        ("post", one + "/approve", f"{TASKS}/{task_id}/approve", 409),
        ("get", "/api/agents/workspaces", "/api/agents/workspaces", 200),
        ("get", one, f"{TASKS}/00000000-0000-0000-0000-000000000000", 404),
    ]
    for method, template, url, status in checks:
        response = await http.request(
            method, url, headers=auth(), json={} if method == "post" else None
        )
        assert response.status_code == status, (url, response.text)
        _validate(document, template, method, status, response.json())


async def test_headers_and_bodies_a_client_must_send_are_documented(document) -> None:
    def parameters(path: str, method: str) -> dict[str, dict]:
        operation = document["paths"][path][method]
        return {(p["in"], p["name"]): p for p in operation["parameters"]}

    create = document["paths"][TASKS]["post"]
    assert create["requestBody"]["required"] is True  # title, lane and instructions
    assert parameters(TASKS, "post")[("header", "Idempotency-Key")]["required"] is False
    heartbeat = "/api/agent/tasks/{run_id}/heartbeat"
    assert parameters(heartbeat, "post")[("header", "X-Claim-Token")]["required"] is True
    events = parameters(f"{TASKS}/{{task_id}}/events", "get")
    assert ("header", "Last-Event-ID") in events and ("query", "after_seq") in events
    # A body every field of which has a default may be left out.
    claim_next = document["paths"]["/api/agent/tasks/claim-next"]["post"]
    assert claim_next["requestBody"]["required"] is False


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_every_reference_resolves(document) -> None:
    references = _refs(document)
    assert references
    for reference in references:
        assert reference.startswith("#/"), reference
        target = document
        for part in reference[2:].split("/"):
            assert part in target, reference
            target = target[part]
    status = parameters_of(document, TASKS, "get")["status"]["schema"]
    assert status == {"$ref": "#/components/schemas/TaskStatus"}


def parameters_of(document, path: str, method: str) -> dict[str, dict]:
    return {p["name"]: p for p in document["paths"][path][method]["parameters"]}


async def test_policy_names_are_enums_of_the_loaded_policy(document, app) -> None:
    policy = app.state.ledger.policy
    create = document["components"]["schemas"]["TaskCreateRequest"]["properties"]
    assert create["lane"]["enum"] == list(policy.lanes)
    assert create["mutation_level"]["enum"] == policy.mutation_levels
    assert create["model_provider"]["enum"] == list(policy.providers)
    claim = document["components"]["schemas"]["ClaimNextRequest"]["properties"]["lanes"]
    assert claim["anyOf"][0]["items"]["enum"] == list(policy.lanes)
    assert "x-policy-names" not in str(document)


async def test_the_document_refuses_nul_where_the_server_does(document, http, auth) -> None:
    """A string with U+0000 is 400 everywhere; the document says so, for a body string,
    a free-form object's keys and nested values, and a query parameter."""
    operation = document["paths"][TASKS]["post"]
    body_schema = {
        **operation["requestBody"]["content"]["application/json"]["schema"],
        "components": document["components"],
    }
    valid = {"lane": "analysis", "title": "t", "instructions": "i", "scope": {"a": [{"b": 1}]}}
    jsonschema.validate(valid, body_schema)
    nul = "\x00"
    for refused in (
        {**valid, "title": f"a{nul}b"},
        {**valid, "scope": {f"k{nul}": 1}},
        {**valid, "scope": {"a": [{"b": f"x{nul}"}]}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(refused, body_schema)
        response = await http.post(TASKS, json=refused, headers=auth())
        assert response.status_code == 400, response.text
    lane = parameters_of(document, TASKS, "get")["lane"]["schema"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(f"a{nul}", lane)
    response = await http.get(TASKS, params={"lane": f"a{nul}"}, headers=auth())
    assert response.status_code == 400
