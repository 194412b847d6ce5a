"""Secret redaction: applied when data enters the ledger and in the log pipeline, so a
secret in a request never reaches a response, a trace event or a log line.

Data with structure is redacted by key, at every depth: dicts and lists, and strings
that hold JSON or a Python literal (tool-call arguments, span inputs and outputs, a
scope value pasted from a config file) are parsed and redacted the same way. What is
left is text, searched for the forms in `secret_forms.py`. Callers that clip text to a
length do it after redaction: a secret cut in half no longer matches.
"""

import ast
import json
import re
from collections.abc import Iterable
from typing import Any

from ledger import fastjson
from ledger.secret_forms import (
    BUILT_IN_NAMES,
    REDACTED,
    TOKEN_FORMS,
    key_value_pattern,
    key_value_replacer,
    name_pattern,
    named_forms,
    names_a_reference,
)

__all__ = ["REDACTED", "Redactor"]

# Text past this length is not parsed as JSON or a Python literal (it is still
# searched as text): parsing is for values such as tool arguments, not for documents.
_MAX_PARSED = 1_000_000
# Substrings without which no token form can match (case-sensitive), grouped by a
# character each one holds, so most text checks only a few: written as substring checks,
# not one pattern, since a regular expression of alternatives costs several times as
# much on the short strings most checks see. `gh` with `_` stands for GitHub's `gh?_`.
_TOKEN_TRIGGERS_BY_CHARACTER = (
    (
        "-",
        (
            "sk-",
            "xapp-",
            "GOCSPX-",
            "PMAK-",
            "NRAK-",
            "HRKU-",
            "tskey-",
            "pypi-",
            "xai-",
            "-p",
            "-u",
            "glpat-",
            "AGE-SECRET",
            "redis-cli",
        ),
    ),
    (
        "_",
        (
            "k_live_",
            "k_test_",
            "gsk_",
            "r8_",
            "lin_api_",
            "ntn_",
            "glsa_",
            "sntrys_",
            "sbp_",
            "shpat_",
            "whsec_",
            "dop_v1_",
            "npm_",
            "wbc_",
            "wbs_",
            "hf_",
            "gh",
        ),
    ),
    (".", ("ya29.", "hvs.", "hvb.", "hvr.", "SG.", "hooks.slack")),
    (":", ("://",)),
)
_TOKEN_TRIGGERS = (
    "eyJ",
    "xox",
    "AKIA",
    "ASIA",
    "AIza",
    "ATATT",
    "PRIVATE KEY",
    "mysql",
    "ldap",
    "SecureString",
)
# JSON looked for inside text: where it may start, and how many failed starts are tried.
_OPENING = re.compile(r"[{\[]")
_MAX_EMBEDDED = 64
_DECODER = json.JSONDecoder()
_HEX_AND_DASHES = "0123456789abcdefABCDEF-"
# Strings found clean are remembered (ids, kinds and worker names repeat across log
# lines and trace events), up to this many and this long.
_CLEAN_MEMORY = 20_000
_CLEAN_LENGTH = 256


def _normalised(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


class Redactor:
    """Replaces values under secret-bearing keys, and secret-looking text anywhere.

    A key is secret-bearing when, lower-cased and with `-` and `_` left out, it ends
    with one of the configured names or the built-in ones: `db_password`, `GitHub-Token`
    and `clientSecret` match, while `input_tokens` (a count) and `tokenizer` do not.
    """

    def __init__(self, secret_keys: Iterable[str]) -> None:
        names = tuple(dict.fromkeys((*secret_keys, *BUILT_IN_NAMES)))
        self._suffixes = tuple({_normalised(name) for name in names})
        self._known_keys: dict[str, bool] = {}
        alternation = name_pattern(names)
        self._key_value = key_value_pattern(alternation)
        self._replace_key_value = key_value_replacer(self._key_value)
        self._forms = (*TOKEN_FORMS, *named_forms(alternation))
        # Text none of the forms can match has none of the names and no token trigger;
        # a name holding another (`db_password`, `password`) needs no check of its own.
        self._name_triggers = tuple(
            name
            for name in self._suffixes
            if not any(other != name and other in name for other in self._suffixes)
        )
        self._clean: set[str] = set()

    def is_secret_key(self, key: str) -> bool:
        # Keys repeat (every log line and trace event uses a few dozen), so each is
        # looked at once per process.
        secret = self._known_keys.get(key)
        if secret is None:
            secret = _normalised(key).endswith(self._suffixes) and not names_a_reference(key)
            if len(self._known_keys) < 10_000:  # keys from requests could be endless
                self._known_keys[key] = secret
        return secret

    def _could_hold_secret(self, value: str) -> bool:
        """False for text that no form can match. Most text written (ids, kinds, status
        messages, worker names) is such, and this check costs a fraction of running the
        forms: it runs for every string of every log line and trace event."""
        if value in self._clean:
            return False
        if self._triggered(value):
            return True
        if len(value) <= _CLEAN_LENGTH:
            if len(self._clean) >= _CLEAN_MEMORY:
                self._clean.clear()
            self._clean.add(value)
        return False

    def _triggered(self, value: str) -> bool:
        if not value.strip(_HEX_AND_DASHES):  # ids and hashes: no form has only these
            return False
        for character, triggers in _TOKEN_TRIGGERS_BY_CHARACTER:
            if character in value:
                for trigger in triggers:
                    if trigger in value:
                        return True
        for trigger in _TOKEN_TRIGGERS:
            if trigger in value:
                return True
        # Case folded as the forms' (?i) folds (U+017F as "s"); `-` and `_` left out
        # as the names may leave them out.
        lowered = value.casefold()
        if "bearer" in lowered or "identified" in lowered:
            return True
        if "-" in lowered or "_" in lowered:
            lowered = lowered.replace("-", "").replace("_", "")
        return any(name in lowered for name in self._name_triggers)

    def text(self, value: str) -> str:
        if not self._could_hold_secret(value):
            return value
        structured = self._structured(value)
        if structured is not None:
            return structured
        return self._substitute(self._embedded_json(value))

    def _substitute(self, value: str) -> str:
        for form in self._forms:
            value = form.substitute(value)
        return self._key_value.sub(self._replace_key_value, value)

    def _structured(self, value: str) -> str | None:
        """Text that is JSON or a Python literal, redacted as data; None for other text.
        Written back only when something was redacted, so clean JSON keeps its form."""
        stripped = value.strip()
        brackets = (stripped[:1], stripped[-1:])
        if len(stripped) > _MAX_PARSED or brackets not in (("{", "}"), ("[", "]")):
            return None
        try:
            parsed, as_json = fastjson.loads(stripped), True
        except (json.JSONDecodeError, UnicodeDecodeError):
            try:
                parsed, as_json = ast.literal_eval(stripped), False
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return None
        redacted = self.value(parsed)
        written = json.dumps(redacted, ensure_ascii=False) if as_json else repr(redacted)
        # Written back only when it redacted something: a tuple read back as a list, or
        # a set in another order, is the same data.
        return written if written.count(REDACTED) > value.count(REDACTED) else value

    def _embedded_json(self, value: str) -> str:
        """JSON inside other text (`request body: {...}`, a `#call tool {...}` line),
        redacted as data: the escapes in its strings (`\\n`, `\\"`) would hide their
        content from the text forms."""
        pieces: list[str] = []
        copied = searched = tried = 0
        while tried < _MAX_EMBEDDED:
            opening = _OPENING.search(value, searched)
            if opening is None:
                break
            try:
                parsed, end = _DECODER.raw_decode(value, opening.start())
            except ValueError:
                tried += 1  # only what fails costs: what parses moves past itself
                searched = opening.start() + 1
                continue
            written = json.dumps(self.value(parsed), ensure_ascii=False)
            if written.count(REDACTED) > value.count(REDACTED, opening.start(), end):
                pieces += [value[copied : opening.start()], written]
                copied = end
            searched = end
        if not pieces:
            return value
        pieces.append(value[copied:])
        return "".join(pieces)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return self._mapping(value)
        if isinstance(value, list | tuple):
            return self._sequence(value)
        if isinstance(value, set | frozenset):  # from a Python literal
            return [self.value(item) for item in value]
        return value

    def _mapping(self, value: dict[Any, Any]) -> dict[Any, Any]:
        redacted = {}
        for key, item in value.items():
            if self.is_secret_key(str(key)) and _may_be_secret(item):
                # A JSON Schema describing a password field holds none.
                redacted[key] = self.value(item) if _describes_a_field(item) else REDACTED
            elif not isinstance(item, str):
                redacted[key] = self.value(item)
            elif self._could_hold_secret(item):  # strings inline: most values are one
                redacted[key] = self.text(item)
            else:
                redacted[key] = item
        # {"name": "DB_PASSWORD", "value": "..."}: how Kubernetes, Docker and many APIs
        # write a list of settings.
        # (Name/Value in ECS and SSM, ParameterKey/ParameterValue in CloudFormation.)
        fields = {str(key).lower(): key for key in value}
        label = next((value[fields[f]] for f in _LABEL_FIELDS if f in fields), None)
        setting = next((fields[f] for f in _VALUE_FIELDS if f in fields), None)
        if (
            setting is not None
            and isinstance(label, str)
            and (self.is_secret_key(label) or self.is_secret_key(label.rsplit("/", 1)[-1]))
            and _may_be_secret(redacted[setting])
        ):
            redacted[setting] = REDACTED
        return redacted

    def _sequence(self, value: list[Any] | tuple[Any, ...]) -> list[Any]:
        redacted = [self.value(item) for item in value]
        # A (name, value) pair from a Python literal: [('Authorization', 'Token x')].
        if (
            isinstance(value, tuple)
            and len(value) == 2
            and isinstance(value[0], str)
            and self.is_secret_key(value[0])
            and _may_be_secret(value[1])
        ):
            redacted[1] = REDACTED
        # A command line as a list: ["--password", "s3cr3t", ...].
        for index, item in enumerate(value[:-1]):
            if (
                isinstance(item, str)
                and item.startswith("-")
                and self.is_secret_key(item.lstrip("-"))
                and isinstance(value[index + 1], str)
            ):
                redacted[index + 1] = REDACTED
        return redacted


_LABEL_FIELDS = ("name", "key", "parameterkey")
_VALUE_FIELDS = ("value", "parametervalue")
_SCHEMA_KEYWORDS = frozenset(
    {"type", "description", "format", "title", "minlength", "maxlength", "pattern", "writeonly"}
)


def _describes_a_field(item: Any) -> bool:
    """`{"type": "string", "description": "The password"}`: a schema, not a value."""
    return (
        isinstance(item, dict)
        and "type" in item
        and {str(key).lower() for key in item} <= _SCHEMA_KEYWORDS
    )


def _may_be_secret(item: Any) -> bool:
    """Flags, nothing and the empty string hold no secret under any key."""
    return item is not None and item is not True and item is not False and item != ""
