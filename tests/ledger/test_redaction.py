from ledger.redaction import _SECRET_PATTERNS, REDACTED, Redactor

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


def test_the_quick_check_skips_only_text_the_patterns_leave_alone() -> None:
    samples = [
        "worker vm:1234 claimed run 5",
        "github_token: ghp_abcdef",
        "API-KEY = k1",
        "my PA\u017fSWORD=hunter2",  # the patterns fold case as Unicode does
        "header BEARER abcdefghijklm",
        "jwt eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl",
        "client_secret:s3",
        "ratio 3:2 and a=b",
        "connection_string=Endpoint=sb://x/",
    ]
    for text in samples:
        slow = text
        for pattern in _SECRET_PATTERNS:
            slow = pattern.sub(REDACTED, slow)
        slow = redactor._assignment.sub(rf"\1\2{REDACTED}", slow)
        assert redactor.text(text) == slow, text
    assert redactor.text("worker vm:1234 claimed run 5") == "worker vm:1234 claimed run 5"
    assert "hunter2" not in redactor.text("my PA\u017fSWORD=hunter2")
