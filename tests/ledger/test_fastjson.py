"""JSON through orjson gives what the standard library gives, including for what
orjson alone refuses."""

import json

from ledger import fastjson


def test_values_orjson_refuses_fall_back_to_the_standard_library() -> None:
    huge = {"n": 2**70, "list": [1, "a", None, 1.5]}
    assert fastjson.loads(json.dumps(huge)) == huge
    assert json.loads(fastjson.dumps(huge)) == huge


def test_unknown_types_use_the_default_and_keys_become_strings() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    encoded = fastjson.dumps({"value": Opaque(), 1: "one"}, default=repr)
    assert json.loads(encoded) == {"value": "<opaque>", "1": "one"}
