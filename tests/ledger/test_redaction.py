from ledger.redaction import REDACTED, Redactor

redactor = Redactor(["api_key", "token", "password", "secret", "connection_string"])


def test_secret_keys_match_by_suffix_only() -> None:
    value = {
        "api_key": "a",
        "GitHub-Token": "b",
        "db_password": "c",
        "client_secret": "d",
        "input_tokens": 5,
        "tokenizer": "bpe",
        "list": [{"token": "e"}],
    }
    assert redactor.value(value) == {
        "api_key": REDACTED,
        "GitHub-Token": REDACTED,
        "db_password": REDACTED,
        "client_secret": REDACTED,
        "input_tokens": 5,
        "tokenizer": "bpe",
        "list": [{"token": REDACTED}],
    }


def test_secrets_inside_text() -> None:
    text = (
        "use Bearer abcdefghijkl, key sk-proj-abcdefghijklmnopqrst and "
        "Endpoint=sb://ns/;SharedAccessKey=xyz; Password=pw1;"
    )
    cleaned = redactor.text(text)
    for secret in ("abcdefghijkl", "sk-proj-abcdefghijklmnopqrst", "xyz", "pw1"):
        assert secret not in cleaned
    assert redactor.text("plain words stay") == "plain words stay"
