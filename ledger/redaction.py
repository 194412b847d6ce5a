"""Secret redaction: applied when data enters the ledger and in the log pipeline, so a
secret in a request never reaches a response, a trace event or a log line."""

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"

# Secrets that hide inside free text rather than under a named key.
_SECRET_PATTERNS = (
    re.compile(r"(?i)\bbearer\s+[a-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)\b(?:password|pwd|accountkey|sharedaccesskey)\s*=\s*[^;\s]+"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWTs
)
# Text none of the patterns can match has neither "sk-" nor "eyJ" nor, case folded,
# "bearer"; nor, unless it has an `=` or a `:`, any of these names.
_ASSIGNED_NAMES = ("password", "pwd", "accountkey", "sharedaccesskey")


class Redactor:
    """Replaces values under secret-bearing keys, and secret-looking text anywhere.

    A key is secret-bearing when, lower-cased with `-` read as `_`, it ends with one of
    the configured names: `db_password` and `github_token` match `password` and
    `token`, while `input_tokens` (a count) does not.
    """

    def __init__(self, secret_keys: Iterable[str]) -> None:
        self._suffixes = tuple(key.lower().replace("-", "_") for key in secret_keys)
        self._known_keys: dict[str, bool] = {}
        # `name=value` / `name: value` in free text, for the same names.
        names = "|".join(re.escape(suffix) for suffix in self._suffixes)
        self._assigned_names = _ASSIGNED_NAMES + self._suffixes
        self._assignment = re.compile(
            rf"(?i)\b(\w*(?:{names}))(\s*[=:]\s*)(?!\[redacted\])[^\s;,'\"}}]+"
        )

    def is_secret_key(self, key: str) -> bool:
        # Keys repeat (every log line and trace event uses a few dozen), so each is
        # looked at once per process.
        secret = self._known_keys.get(key)
        if secret is None:
            secret = key.lower().replace("-", "_").endswith(self._suffixes)
            if len(self._known_keys) < 10_000:  # keys from requests could be endless
                self._known_keys[key] = secret
        return secret

    def _could_hold_secret(self, value: str) -> bool:
        """False for text that no pattern can match. Most text written (ids, kinds,
        status messages, worker names) is such, and this check costs a fraction of
        running the patterns (written out, not with any(): it runs for every string of
        every log line and trace event)."""
        if "sk-" in value or "eyJ" in value:
            return True
        lowered = value.casefold()  # folded as the patterns (?i) fold: U+017F as "s"
        if "bearer" in lowered:
            return True
        if "=" in value or ":" in value:
            for name in self._assigned_names:
                if name in lowered:
                    return True
        return False

    def _substitute(self, value: str) -> str:
        for pattern in _SECRET_PATTERNS:
            value = pattern.sub(REDACTED, value)
        return self._assignment.sub(rf"\1\2{REDACTED}", value)

    def text(self, value: str) -> str:
        return self._substitute(value) if self._could_hold_secret(value) else value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            redacted = {}
            for key, item in value.items():
                if self.is_secret_key(str(key)):
                    redacted[key] = REDACTED
                elif not isinstance(item, str):
                    redacted[key] = self.value(item)
                elif self._could_hold_secret(item):  # strings inline: most values are one
                    redacted[key] = self._substitute(item)
                else:
                    redacted[key] = item
            return redacted
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value
