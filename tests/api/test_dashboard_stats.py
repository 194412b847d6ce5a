"""`GET /api/dashboard/stats`: counts, a week of trends and the latest activity, for the
caller's tenant only."""

from datetime import UTC, date, datetime, timedelta

STATS = "/api/dashboard/stats"
TASKS = "/api/agents/tasks"
REVIEWED = {"lane": "change-prod", "mutation_level": "write_prod", "scope": {"rollback": "x"}}


async def test_stats_count_what_the_tenant_did_today(http, auth, new_task, tenant) -> None:
    await new_task()
    await new_task(**REVIEWED)  # waits for approval
    approved = (await new_task(**REVIEWED))["task"]
    await http.post(f"{TASKS}/{approved['id']}/approve", json={}, headers=auth())
    await new_task(lane="change-prod", mutation_level="write_prod")  # denied: no rollback

    response = await http.get(STATS, headers=auth("viewer"))
    assert response.status_code == 200, response.text
    stats = response.json()
    counts = stats["counts"]
    assert counts["tasks"]["queued"] == 2 and counts["tasks"]["denied"] == 1
    assert counts["approvals_waiting"] == 1 == counts["tasks"]["awaiting_approval"]
    assert counts["audit_records"] == 2  # the approval and the denial
    assert counts["agents_active"] == 0

    trends = stats["trends"]
    today = datetime.now(UTC).date()
    assert [date.fromisoformat(t["day"]) for t in trends] == [
        today - timedelta(days=back) for back in range(6, -1, -1)
    ]
    assert trends[-1]["tasks_created"] == 4 and trends[-1]["audit_records"] == 2
    assert trends[-1]["audit_warnings"] == 1  # the denial
    assert all(t["tasks_created"] == 0 for t in trends[:-1])

    recent = stats["recent_activity"]
    assert len(recent) == 10
    assert [e["created_at"] for e in recent] == sorted(
        (e["created_at"] for e in recent), reverse=True
    )
    # The last thing done was the denial: its audit record comes first at its time.
    assert (recent[0]["source"], recent[0]["action"]) == ("audit", "policy_denied")

    other = (await http.get(STATS, headers=auth(tenant_id=f"other-{tenant}"))).json()
    assert other["counts"]["audit_records"] == 0 and other["recent_activity"] == []
    assert sum(other["counts"]["tasks"].values()) == 0


async def test_stats_list_the_changes_waiting_for_a_decision(http, auth) -> None:
    ticket = (await http.post("/api/tickets", json={"title": "Phishing"}, headers=auth())).json()[
        "ticket"
    ]["id"]
    requested = []
    for target in ("https://example.invalid/a", "https://example.invalid/b"):
        response = await http.post(
            "/api/changes/request",
            json={
                "ticket_id": ticket,
                "action": "block_url",
                "target": target,
                "reason": "Confirmed phishing URL.",
                "risk_level": "medium",
            },
            headers=auth(subject="agent-26"),
        )
        assert response.status_code == 201, response.text
        requested.append(response.json()["change"])
    rejected = await http.post(
        f"/api/changes/{requested[0]['id']}/reject",
        json={"reason": "not phishing"},
        headers=auth(subject="olivia"),
    )
    assert rejected.status_code == 200, rejected.text
    stats = (await http.get(STATS, headers=auth("viewer"))).json()
    assert stats["counts"]["changes_pending"] == 1
    assert [(c["id"], c["target"], c["requested_by"]) for c in stats["pending_changes"]] == [
        (requested[1]["id"], "https://example.invalid/b", "agent-26")
    ]
