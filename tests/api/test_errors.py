"""Every failure is a JSON error with the right 4xx code: never a traceback, never a 500."""

import httpx
import pytest

TASKS = "/api/agents/tasks"


def _assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert "Traceback" not in response.text
    return error


async def test_unknown_route_and_wrong_method(http: httpx.AsyncClient, auth) -> None:
    _assert_error(await http.get("/api/nothing-here", headers=auth()), 404, "not_found")
    _assert_error(await http.delete(TASKS, headers=auth()), 405, "method_not_allowed")
    # RFC 9110: a 405 lists what the path does allow, from every route of the path.
    assert (await http.delete(TASKS, headers=auth())).headers["allow"] == "GET, HEAD, POST"
    approve = f"{TASKS}/00000000-0000-0000-0000-000000000000/approve"
    assert (await http.get(approve, headers=auth())).headers["allow"] == "POST"
    # A task id that is not a UUID is not a route either.
    _assert_error(await http.get(f"{TASKS}/12345", headers=auth()), 404, "not_found")


async def test_bad_json(http, auth) -> None:
    response = await http.post(TASKS, content=b'{"lane": "analysis",', headers=auth())
    _assert_error(response, 400, "invalid_json")
    response = await http.post(TASKS, content=b"\xff\xfe", headers=auth())
    _assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"lane": "analysis", "title": 5, "instructions": "x"}, ["body", "title"]),
        (
            {"lane": "analysis", "title": "t", "instructions": "x", "colour": "red"},
            ["body", "colour"],
        ),
        ({"lane": "analysis", "title": "t"}, ["body", "instructions"]),
        ({"lane": "analysis", "title": "t", "instructions": "x", "scope": []}, ["body", "scope"]),
        (
            {
                "lane": "analysis",
                "title": "t",
                "instructions": "x",
                "break_glass_acknowledged": "yes",
            },
            ["body", "break_glass_acknowledged"],
        ),
        ([1, 2, 3], ["body"]),
    ],
)
async def test_invalid_bodies_name_the_field(http, auth, body, location) -> None:
    error = _assert_error(await http.post(TASKS, json=body, headers=auth()), 400, "invalid_request")
    assert location in [problem["location"] for problem in error["details"]["problems"]]


async def test_validation_errors_do_not_echo_input(http, auth) -> None:
    body = {"lane": "analysis", "title": "t", "instructions": "x", "api_key": "sk-not-echoed"}
    response = await http.post(TASKS, json=body, headers=auth())
    _assert_error(response, 400, "invalid_request")
    assert "sk-not-echoed" not in response.text


async def test_oversized_body_is_413(http, auth) -> None:
    big = b'{"instructions": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    _assert_error(await http.post(TASKS, content=big, headers=auth()), 413, "body_too_large")

    async def chunks():  # no Content-Length: the limit counts what arrives
        for _ in range(20):
            yield b"x" * (64 * 1024)

    _assert_error(await http.post(TASKS, content=chunks(), headers=auth()), 413, "body_too_large")


async def test_missing_and_bad_tokens_are_401(http, auth) -> None:
    _assert_error(await http.get(TASKS), 401, "unauthenticated")
    _assert_error(
        await http.get(TASKS, headers={"Authorization": "Bearer nope"}), 401, "unauthenticated"
    )
    _assert_error(
        await http.get(TASKS, headers={"Authorization": "Basic abc"}), 401, "unauthenticated"
    )
    response = await http.get(TASKS)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_wrong_role_is_403(http, auth, new_task) -> None:
    response = await http.post(
        TASKS, json={"lane": "analysis", "title": "t", "instructions": "x"}, headers=auth("viewer")
    )
    error = _assert_error(response, 403, "forbidden")
    assert error["details"]["required_role"] == "operator"
    task = (await new_task())["task"]
    for action in ("approve", "cancel", "retry", "dispatch", "run"):
        response = await http.post(
            f"{TASKS}/{task['id']}/{action}", json={}, headers=auth("viewer")
        )
        _assert_error(response, 403, "forbidden")
    # A worker token is not a person's token.
    _assert_error(await http.get(TASKS, headers=auth("worker")), 403, "forbidden")


async def test_inputs_postgres_cannot_store_are_400_not_500(http, auth, new_task) -> None:
    body = {"lane": "analysis", "title": "a\u0000b", "instructions": "x"}
    _assert_error(await http.post(TASKS, json=body, headers=auth()), 400, "invalid_request")
    nested = {"lane": "analysis", "title": "t", "instructions": "x", "scope": {"k": "\u0000"}}
    _assert_error(await http.post(TASKS, json=nested, headers=auth()), 400, "invalid_request")
    # An escaped backslash before "u0000" is text, not a NUL.
    pattern = {"lane": "analysis", "title": "^[^\\u0000]*$", "instructions": "x"}
    stored = await http.post(TASKS, json=pattern, headers=auth())
    assert stored.status_code == 201, stored.text
    assert stored.json()["task"]["title"] == "^[^\\u0000]*$"
    _assert_error(
        await http.get(TASKS, params={"lane": "\x00"}, headers=auth()), 400, "invalid_request"
    )
    _assert_error(await http.get("/api/it-requests/a%00b", headers=auth()), 400, "invalid_request")
    task = (await new_task())["task"]
    huge = await http.get(
        f"{TASKS}/{task['id']}/traces", params={"after_seq": 2**31}, headers=auth()
    )
    _assert_error(huge, 400, "invalid_request")
    for position in ("²", str(2**40)):
        response = await http.get(
            f"{TASKS}/{task['id']}/events", params={"after_seq": position}, headers=auth()
        )
        _assert_error(response, 400, "invalid_request")
