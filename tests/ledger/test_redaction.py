"""The redactor catches secrets in every form they are written, and leaves ordinary
operations text exactly as it was: a redactor that blanks too much fails here as surely
as one that lets a secret through."""

import json
from pathlib import Path

import pytest
from planted_secrets import WRITTEN_FORMS

from ledger.policy import load_policy
from ledger.redaction import REDACTED, Redactor
from ledger.secret_forms import TOKEN_FORMS, name_pattern, named_forms

redactor = Redactor(load_policy().secret_keys)
CORPUS = Path(__file__).with_name("corpus")


@pytest.mark.parametrize(
    ("form", "text", "secret"), WRITTEN_FORMS, ids=[f[0] for f in WRITTEN_FORMS]
)
def test_each_written_form_is_redacted(form: str, text: str, secret: str) -> None:
    cleaned = redactor.text(text)
    assert secret not in cleaned
    assert REDACTED in cleaned
    assert redactor.text(cleaned) == cleaned  # redacting again changes nothing


FORMS = [*TOKEN_FORMS, *named_forms(name_pattern(["password", "token"]))]


@pytest.mark.parametrize("form", FORMS, ids=[form.name for form in FORMS])
def test_every_documented_form_redacts_its_example(form) -> None:
    assert "s3cr3t" in form.example.lower()
    assert "s3cr3t" not in redactor.text(form.example).lower()


def test_secret_keys_match_by_suffix_at_every_depth() -> None:
    value = {
        "api_key": "a",
        "GitHub-Token": "b",
        "db_password": "c",
        "clientSecret": "d",
        "privateKey": {"pem": "e", "kid": 1},
        "input_tokens": 5,
        "tokenizer": "bpe",
        "existingSecret": "payments-db",  # names where the secret is kept
        "automountServiceAccountToken": False,
        "list": [{"token": "f"}, {"name": "DB_PASSWORD", "value": "g"}],
    }
    assert redactor.value(value) == {
        "api_key": REDACTED,
        "GitHub-Token": REDACTED,
        "db_password": REDACTED,
        "clientSecret": REDACTED,
        "privateKey": REDACTED,
        "input_tokens": 5,
        "tokenizer": "bpe",
        "existingSecret": "payments-db",
        "automountServiceAccountToken": False,
        "list": [{"token": REDACTED}, {"name": "DB_PASSWORD", "value": REDACTED}],
    }


def test_strings_holding_json_or_python_literals_are_redacted_as_data() -> None:
    arguments = json.dumps({"url": "https://x", "headers": {"Authorization": "Basic abc"}})
    span_input = json.dumps(
        [{"role": "user", "content": "hi"}, {"type": "function_call", "arguments": arguments}]
    )
    redacted = json.loads(redactor.text(span_input))
    inner = json.loads(redacted[1]["arguments"])
    assert inner == {"url": "https://x", "headers": {"Authorization": REDACTED}}
    # A secret-named key over a structure hides the whole structure.
    assert json.loads(redactor.text('{"credentials": {"user": "bob", "pin": 1234}}')) == {
        "credentials": REDACTED
    }
    assert redactor.text("{'auth': {'token': 'hunter2'}}") == "{'auth': {'token': '[redacted]'}}"
    assert redactor.value(["deploy", "--token", "hunter2", "--dry-run"]) == [
        "deploy",
        "--token",
        REDACTED,
        "--dry-run",
    ]
    clean = '{"password_policy": "12 characters", "tokens": 3}'
    assert redactor.text(clean) == clean  # nothing redacted: the text keeps its form


@pytest.mark.parametrize("path", sorted(CORPUS.iterdir()), ids=lambda path: path.name)
def test_operations_text_comes_through_unchanged(path: Path) -> None:
    text = path.read_text()
    assert redactor.text(text) == text
    for line in text.splitlines():  # also when it arrives a line at a time (log lines)
        assert redactor.text(line) == line
    if path.suffix == ".json":
        data = json.loads(text)
        assert redactor.value(data) == data


@pytest.mark.parametrize(
    "text",
    [
        "password: open the portal and reset it",  # prose, not an assignment
        "the token: expires in an hour",
        "bearer authentication is required",
        "token_type=Bearer scope=charges.write",
        "docker run -u 1000:1000 image",
        "set -euo pipefail; echo $PWD:/work",
        "password: ${DB_PASSWORD}",
        "TOKEN=$(az account get-access-token -o tsv)",
        "commit 9f2c1e7b3a4d5e6f708192a3b4c5d6e7f8091a2b, run 7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "input_tokens=1834 output_tokens=212 max_tokens=4096",
        "passwordless login; tokenizer=bpe; secretName: tls",
        # Names in code, types, expressions, placeholders and settings.
        "administrator_password = var.db_password",
        'token = os.environ["API_TOKEN"]',
        "        self.token = token",
        "def login(username: str, password: str) -> Session:",
        "password: ${{ secrets.GITHUB_TOKEN }}",
        "security:\n  authorization: enabled",
        "permissions:\n  id-token: write",
        "docker exec -u root:root -it api sh",
        "SELECT user_id FROM sessions WHERE token = ? AND expires_at > now()",
        "HOME=/root\nOLDPWD=/home/deploy\nPWD=/work/main",
        "{'input_tokens': (812, 96), 'scopes': {'read'}, 'model': 'gpt-4.1'}",
        '{"Items": [], "NextToken": "AAMA-EFRSURBSGljTm9ZQkFkTkE"}',
        '{"password": {"type": "string", "description": "The password"}}',
    ],
)
def test_text_about_secrets_is_not_a_secret(text: str) -> None:
    assert redactor.text(text) == text


def test_the_quick_check_skips_only_text_no_form_could_change() -> None:
    samples = [text for _, text, _ in WRITTEN_FORMS] + [form.example for form in FORMS]
    samples += [line for path in CORPUS.iterdir() for line in path.read_text().splitlines()]
    samples += ["worker vm:1234 claimed run 5", "my PA\u017fSWORD=hunter2", "API-KEY = k1"]
    skipped = [text for text in samples if not redactor._could_hold_secret(text)]
    assert skipped  # the check does skip text
    for text in skipped:
        assert redactor._substitute(text) == text, text
    assert "hunter2" not in redactor.text("my PA\u017fSWORD=hunter2")  # folded as (?i) folds
