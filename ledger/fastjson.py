"""JSON through orjson, with the standard library behind it for what orjson refuses
(integers past 64 bits): the same results, a fraction of the CPU. Used where JSON is
hot: jsonb columns read from Postgres, and log lines (written as the bytes `dumps`
returns, with no decode and encode on the way)."""

import json
from typing import Any

import orjson


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def dumps(value: Any, **options: Any) -> bytes:
    """UTF-8 JSON. `default` (a fallback for unknown types) is the only option passed on."""
    default = options.get("default")
    try:
        return orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value, default=default).encode()
