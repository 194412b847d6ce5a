"""Guarded transitions under concurrency: of two racing decisions exactly one wins and
the loser changes nothing."""

import asyncio

import httpx

TASKS = "/api/agents/tasks"


async def test_racing_approvals_apply_once(http: httpx.AsyncClient, auth, new_task) -> None:
    task = (
        await new_task(
            lane="change-prod", mutation_level="write_prod", scope={"rollback": "revert"}
        )
    )["task"]
    responses = await asyncio.gather(
        *(
            http.post(f"{TASKS}/{task['id']}/approve", json={}, headers=auth(subject=f"op{i}"))
            for i in range(5)
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409, 409]
    traces = (await http.get(f"{TASKS}/{task['id']}/traces", headers=auth())).json()["traces"]
    assert [t["kind"] for t in traces].count("approved") == 1
    assert (await http.get(f"{TASKS}/{task['id']}", headers=auth())).json()["task"]["attempt"] == 1


async def test_cancel_racing_approve_leaves_one_consistent_outcome(http, auth, new_task) -> None:
    task = (
        await new_task(
            lane="change-prod", mutation_level="write_prod", scope={"rollback": "revert"}
        )
    )["task"]
    approve, cancel = await asyncio.gather(
        http.post(f"{TASKS}/{task['id']}/approve", json={}, headers=auth()),
        http.post(f"{TASKS}/{task['id']}/cancel", json={}, headers=auth()),
    )
    final = (await http.get(f"{TASKS}/{task['id']}", headers=auth())).json()["task"]
    traces = (await http.get(f"{TASKS}/{task['id']}/traces", headers=auth())).json()["traces"]
    kinds = [t["kind"] for t in traces]
    # Cancel is legal from queued too, so both may succeed, in that order only.
    if approve.status_code == 200 and cancel.status_code == 200:
        assert kinds[-2:] == ["approved", "cancelled"]
    else:
        assert cancel.status_code == 200 and approve.status_code == 409
        assert kinds[-1] == "cancelled" and "approved" not in kinds
    assert final["status"] == "cancelled"
