"""A tenant's agent runtime settings as the settings page uses them: read the defaults,
store profiles and routes, read them back; a secret is refused naming its field and
never stored; only an operator or owner changes them; another tenant sees its own;
each change leaves an audit record. Agents started from a profile or a free prompt are
governed tasks: queued, awaiting approval or denied as the policy says."""

import json

import pytest
from planted_secrets import WRITTEN_FORMS, forms_text, leaked

CONFIG = "/api/agents/config"

TRIAGE = {
    "description": "First look at an incident",
    "lane": "analysis",
    "model_provider": "offline",
    "model": "offline",
    "instructions": "Read the ticket and summarise what is known.",
    "timeout_minutes": 15,
}
PROD_FIX = {
    "lane": "change-prod",
    "mutation_level": "write_prod",
    "instructions": "Apply the approved production change.",
}
SETTINGS = {
    "active_profile": "triage",
    "profiles": {"triage": TRIAGE, "prod-fix": PROD_FIX},
    "route_assignments": {"Change": "prod-fix"},
    "max_concurrent_agents": 3,
    "default_timeout_minutes": 45,
    "default_model_provider": "offline",
    "default_model": "offline",
}


async def _put(http, auth, body: dict, *roles: str, **who: str):
    return await http.put(CONFIG, json=body, headers=auth(*(roles or ("operator",)), **who))


async def _audit(pool, tenant: str) -> list[dict]:
    rows = await pool.fetch(
        "SELECT actor, action, target_type, detail FROM audit_records "
        "WHERE tenant_id = $1 AND target_type = 'agent_config' ORDER BY seq",
        tenant,
    )
    return [dict(row) for row in rows]


async def test_settings_round_trip_with_an_audit_record(http, auth, pool, tenant) -> None:
    fresh = (await http.get(CONFIG, headers=auth("viewer"))).json()["agent_config"]
    assert fresh["updated_by"] is None
    assert fresh["config"]["profiles"] == {}
    assert fresh["config"]["default_model_provider"] == "offline"

    stored = await _put(http, auth, SETTINGS, subject="olga")
    assert stored.status_code == 200, stored.text
    read = (await http.get(CONFIG, headers=auth("viewer"))).json()["agent_config"]
    assert read == stored.json()["agent_config"]
    assert read["updated_by"] == "olga"
    config = read["config"]
    assert config["profiles"]["triage"] == {
        **TRIAGE,
        "mutation_level": "read_only",
        "auto_assign": False,
    }
    assert config["profiles"]["prod-fix"]["lane"] == "change-prod"
    assert config["route_assignments"] == {"Change": "prod-fix"}
    assert (config["max_concurrent_agents"], config["default_timeout_minutes"]) == (3, 45)

    # A PUT replaces the whole document.
    again = await _put(http, auth, {"profiles": {"triage": TRIAGE}}, "owner", subject="omar")
    assert again.status_code == 200, again.text
    assert again.json()["agent_config"]["config"]["route_assignments"] == {}
    assert again.json()["agent_config"]["config"]["max_concurrent_agents"] == 5

    records = await _audit(pool, tenant)
    assert [(r["actor"], r["action"]) for r in records] == [
        ("olga", "agent_config_updated"),
        ("omar", "agent_config_updated"),
    ]
    # The default provider was offline already.
    assert set(records[0]["detail"]["changed"]) == set(SETTINGS) - {"default_model_provider"}
    assert records[1]["detail"]["profiles"] == ["triage"]
    assert "prod-fix" not in records[1]["detail"]["profiles"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"profiles": {"triage": {**TRIAGE, "instructions": "password: hunter2-yaml"}}},
            "profiles.triage.instructions",
        ),
        (
            {
                "profiles": {
                    "triage": {**TRIAGE, "description": "key sk-proj-Hunter2Hunter2Hunter2"}
                }
            },
            "profiles.triage.description",
        ),
    ],
)
async def test_a_secret_is_refused_naming_its_field(http, auth, pool, tenant, body, field) -> None:
    await _put(http, auth, SETTINGS)
    refused = await _put(http, auth, body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["details"]["field"]) == ("secret_refused", field)
    assert field in error["message"]
    assert not leaked(refused.text)
    # Nothing changed, nothing audited but the first store.
    read = (await http.get(CONFIG, headers=auth())).json()["agent_config"]["config"]
    assert read["profiles"]["triage"] == {
        **TRIAGE,
        "mutation_level": "read_only",
        "auto_assign": False,
    }
    assert len(await _audit(pool, tenant)) == 1


async def test_a_key_field_is_refused_by_name(http, auth) -> None:
    refused = await _put(http, auth, {**SETTINGS, "openai_api_key": "sk-hunter2"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["details"]["field"] == "openai_api_key"
    assert "sk-hunter2" not in refused.text


async def test_a_profile_name_is_a_label_not_a_secret(http, auth) -> None:
    body = {"profiles": {"reset-password": TRIAGE, "api-token-rotation": TRIAGE}}
    stored = await _put(http, auth, body)
    assert stored.status_code == 200, stored.text
    assert sorted(stored.json()["agent_config"]["config"]["profiles"]) == [
        "api-token-rotation",
        "reset-password",
    ]


async def test_every_planted_form_is_refused(http, auth, pool, tenant) -> None:
    for name, text, _ in WRITTEN_FORMS:
        body = {"profiles": {"triage": {**TRIAGE, "instructions": f"Summarise.\n{text}"}}}
        refused = await _put(http, auth, body)
        assert refused.status_code == 400, (name, refused.text)
        assert refused.json()["error"]["details"]["field"] == "profiles.triage.instructions"
        assert not leaked(refused.text), name
    stored = await pool.fetch(
        "SELECT settings::text FROM agent_runtime_settings WHERE tenant_id = $1", tenant
    )
    assert stored == []
    assert await _audit(pool, tenant) == []


async def test_only_an_operator_or_owner_changes_the_settings(http, auth, pool, tenant) -> None:
    refused = await _put(http, auth, SETTINGS, "viewer")
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["details"]["required_role"] == "operator"
    assert (await http.get(CONFIG, headers=auth("viewer"))).status_code == 200
    assert (await _put(http, auth, SETTINGS, "worker")).status_code == 403
    assert await _audit(pool, tenant) == []


async def test_another_tenants_settings_are_its_own(http, auth) -> None:
    assert (await _put(http, auth, SETTINGS)).status_code == 200
    other = auth(tenant_id="tenant-elsewhere-agent-config")
    theirs = (await http.get(CONFIG, headers=other)).json()["agent_config"]
    assert theirs["config"]["profiles"] == {}
    assert theirs["updated_by"] is None
    spawned = await http.post(
        "/api/agents/spawn", json={"profile": "triage", "prompt": "Look."}, headers=other
    )
    assert spawned.status_code == 404, spawned.text


async def test_a_route_to_an_undefined_profile_conflicts(http, auth) -> None:
    body = {**SETTINGS, "route_assignments": {"Incident": "nobody"}}
    refused = await _put(http, auth, body)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["details"]["field"] == "route_assignments.Incident"
    unknown_active = await _put(http, auth, {"active_profile": "triage"})
    assert unknown_active.status_code == 409, unknown_active.text


async def test_models_list_the_configured_providers(http, auth, monkeypatch) -> None:
    for name in ("OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "WORKBENCH_COMPATIBLE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    alone = (await http.get("/api/agents/models", headers=auth("viewer"))).json()
    assert alone["models"] == [{"provider": "offline", "model": "offline", "default": True}]
    assert alone["harnesses"] == ["openai-agents"]

    monkeypatch.setenv("WORKBENCH_COMPATIBLE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("WORKBENCH_COMPATIBLE_MODEL", "llama-3.1-8b")
    await _put(http, auth, SETTINGS)
    both = (await http.get("/api/agents/models", headers=auth("viewer"))).json()
    assert {(m["provider"], m["model"]) for m in both["models"]} == {
        ("offline", "offline"),
        ("compatible", "llama-3.1-8b"),
    }
    assert both["config"]["active_profile"] == "triage"


async def test_spawn_makes_a_governed_task_from_a_profile(http, auth, tenant) -> None:
    await _put(http, auth, SETTINGS)
    ticket = await http.post("/api/tickets", json={"title": "Disk full"}, headers=auth())
    ticket_id = ticket.json()["ticket"]["id"]

    spawned = await http.post(
        "/api/agents/spawn",
        json={"profile": "triage", "prompt": "Why is db01 full?", "ticket_id": ticket_id},
        headers=auth(),
    )
    assert spawned.status_code == 201, spawned.text
    body = spawned.json()
    task = body["task"]
    assert (task["status"], body["policy_verdict"]["decision"]) == ("queued", "allow")
    assert task["lane"] == "analysis"
    assert task["instructions"].startswith(TRIAGE["instructions"])
    assert task["instructions"].endswith("Why is db01 full?")
    assert task["scope"]["agent_profile"] == {
        "name": "triage",
        "model": "offline",
        "timeout_minutes": 15,
    }
    assert body["ticket_id"] == ticket_id
    context = (await http.get(f"/api/tickets/{ticket_id}/context", headers=auth())).json()
    assert task["id"] in [recent["id"] for recent in context["context"]["recent_tasks"]]

    # A production profile waits for an approver, as any production task does.
    prod = await http.post(
        "/api/agents/spawn",
        json={"profile": "prod-fix", "prompt": "Fail over db01.", "scope": {"rollback": "Back."}},
        headers=auth(),
    )
    assert prod.status_code == 201, prod.text
    assert prod.json()["task"]["status"] == "awaiting_approval"
    assert prod.json()["policy_verdict"]["decision"] == "require_approval"
    approved = await http.post(
        f"/api/agents/tasks/{prod.json()['task']['id']}/approve",
        json={"reason": "planned"},
        headers=auth("owner", subject="omar"),
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["task"]["status"] == "queued"
    # Without its rollback plan the policy denies it, and the denial is recorded.
    denied = await http.post(
        "/api/agents/spawn", json={"profile": "prod-fix", "prompt": "Fail over."}, headers=auth()
    )
    assert denied.json()["task"]["status"] == "denied"


async def test_spawn_refuses_what_it_cannot_find(http, auth) -> None:
    await _put(http, auth, SETTINGS)
    unknown = await http.post(
        "/api/agents/spawn", json={"profile": "nobody", "prompt": "x"}, headers=auth()
    )
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["error"]["details"]["known"] == ["prod-fix", "triage"]
    other = await http.post(
        "/api/tickets", json={"title": "Theirs"}, headers=auth(tenant_id="tenant-other-spawn")
    )
    theirs = await http.post(
        "/api/agents/spawn",
        json={"profile": "triage", "prompt": "x", "ticket_id": other.json()["ticket"]["id"]},
        headers=auth(),
    )
    assert theirs.status_code == 404, theirs.text
    viewer = await http.post(
        "/api/agents/spawn", json={"profile": "triage", "prompt": "x"}, headers=auth("viewer")
    )
    assert viewer.status_code == 403


async def test_create_from_prompt_routes_by_ticket_class(http, auth) -> None:
    # Before any settings: the defaults alone.
    plain = await http.post(
        "/api/agents/create-from-prompt", json={"prompt": "Printer offline"}, headers=auth()
    )
    assert plain.status_code == 201, plain.text
    assert plain.json()["profile"]["name"] == "default"
    assert plain.json()["task"]["status"] == "queued"
    ticket = await http.get(f"/api/tickets/{plain.json()['ticket_id']}", headers=auth())
    assert ticket.json()["ticket"]["title"] == "Printer offline"

    await _put(http, auth, SETTINGS)
    active = await http.post(
        "/api/agents/create-from-prompt", json={"prompt": "VPN drops"}, headers=auth()
    )
    assert active.json()["profile"]["name"] == "triage"
    routed = await http.post(
        "/api/agents/create-from-prompt",
        json={"prompt": "Rotate the cert", "ticket_class": "Change", "priority": "P2"},
        headers=auth(),
    )
    assert routed.status_code == 201, routed.text
    assert routed.json()["profile"]["name"] == "prod-fix"
    # No rollback plan in a free prompt: the production lane's policy denies it.
    assert routed.json()["task"]["status"] == "denied"


async def test_planted_secrets_never_come_back(http, auth, pool, tenant) -> None:
    every_form = forms_text()
    await _put(http, auth, SETTINGS)
    spawned = await http.post(
        "/api/agents/spawn",
        json={"profile": "triage", "prompt": every_form, "scope": {"notes": every_form}},
        headers=auth(),
    )
    prompted = await http.post(
        "/api/agents/create-from-prompt",
        json={"prompt": every_form, "title": f"Rotate {WRITTEN_FORMS[0][1]}"},
        headers=auth(),
    )
    assert (spawned.status_code, prompted.status_code) == (201, 201), prompted.text
    texts = {
        "spawn": spawned.text,
        "create-from-prompt": prompted.text,
        "config": (await http.get(CONFIG, headers=auth())).text,
        "models": (await http.get("/api/agents/models", headers=auth())).text,
        "runner health": (await http.get("/api/agents/runner-health", headers=auth())).text,
        "ticket": (
            await http.get(f"/api/tickets/{prompted.json()['ticket_id']}", headers=auth())
        ).text,
    }
    for table in ("tasks", "tickets", "agent_runtime_settings", "audit_records"):
        rows = await pool.fetch(
            f"SELECT t::text AS row FROM {table} t WHERE tenant_id = $1",  # noqa: S608 - fixed names
            tenant,
        )
        texts[table] = json.dumps([row["row"] for row in rows])
    assert {name: leaked(text) for name, text in texts.items() if leaked(text)} == {}


async def test_max_concurrent_agents_refuses_one_more(http, auth, tenant) -> None:
    await _put(http, auth, {**SETTINGS, "max_concurrent_agents": 2})
    body = {"profile": "triage", "prompt": "Look."}
    first = await http.post("/api/agents/spawn", json=body, headers=auth())
    second = await http.post(
        "/api/agents/create-from-prompt", json={"prompt": "Look."}, headers=auth()
    )
    assert (first.status_code, second.status_code) == (201, 201), second.text
    refused = [
        await http.post("/api/agents/spawn", json=body, headers=auth()),
        await http.post("/api/agents/create-from-prompt", json={"prompt": "x"}, headers=auth()),
    ]
    for response in refused:
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "agent_limit_reached"
        assert error["details"] == {"live_agents": 2, "max_concurrent_agents": 2}
    # A finished agent makes room; a denied one never took any.
    cancelled = await http.post(
        f"/api/agents/tasks/{first.json()['task']['id']}/cancel", json={}, headers=auth()
    )
    assert cancelled.status_code == 200, cancelled.text
    denied = await http.post(
        "/api/agents/spawn", json={"profile": "prod-fix", "prompt": "x"}, headers=auth()
    )
    assert denied.json()["task"]["status"] == "denied"
    again = await http.post("/api/agents/spawn", json=body, headers=auth())
    assert again.status_code == 201, again.text
