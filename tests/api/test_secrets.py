"""No secret value leaves the backend: not in responses, traces or log lines."""

import json

import structlog

from cli.logs import configure_logging
from ledger.policy import load_policy
from ledger.redaction import Redactor

TASKS = "/api/agents/tasks"
SECRETS = (
    "sk-live-abcdefghijklmnopqrstu",
    "hunter2-hunter2",
    "abcdefghijklmnopqrstuvwxyz0123",
    "AccountKey=c2VjcmV0a2V5",
)


async def test_planted_secrets_never_come_back(http, auth, new_task) -> None:
    body = await new_task(
        instructions="Deploy with Bearer abcdefghijklmnopqrstuvwxyz0123 please",
        scope={
            "api_key": SECRETS[0],
            "nested": {"db_password": SECRETS[1]},
            "storage": "DefaultEndpointsProtocol=https;AccountKey=c2VjcmV0a2V5;",
            "input_tokens": 12,
        },
    )
    task_id = body["task"]["id"]
    scope = body["task"]["scope"]
    assert scope["api_key"] == "[redacted]"
    assert scope["nested"]["db_password"] == "[redacted]"
    assert scope["input_tokens"] == 12  # a count, not a secret
    await http.post(f"{TASKS}/{task_id}/run", headers=auth())
    await http.post(
        f"{TASKS}/{task_id}/rollback",
        json={"reason": "token=abc", "remediation": "password=hunter2-hunter2"},
        headers=auth(),
    )

    responses = [
        json.dumps(body),
        (await http.get(f"{TASKS}/{task_id}", headers=auth())).text,
        (await http.get(TASKS, headers=auth())).text,
        (await http.get(f"{TASKS}/{task_id}/traces", headers=auth())).text,
        (await http.get(f"{TASKS}/{task_id}/artifacts", headers=auth())).text,
    ]
    artifacts = json.loads(responses[-1])["artifacts"]
    responses += [(await http.get(a["download_url"], headers=auth())).text for a in artifacts]
    for text in responses:
        for secret in SECRETS:
            assert secret not in text
    traces = json.loads(responses[3])["traces"]
    assert "secrets_redacted" in [trace["kind"] for trace in traces]


def test_log_lines_are_redacted(capsys) -> None:
    configure_logging(Redactor(load_policy().secret_keys))
    try:
        structlog.get_logger("t").info(
            "connecting",
            connection_string="Endpoint=sb://x;SharedAccessKey=abc123",
            detail="header Bearer abcdefghijklmnopqrstuvwxyz0123",
            tokens_used=3,
        )
        line = capsys.readouterr().err
        assert "abc123" not in line and "abcdefghijklmnopqrstuvwxyz0123" not in line
        assert json.loads(line)["tokens_used"] == 3
    finally:
        structlog.reset_defaults()
