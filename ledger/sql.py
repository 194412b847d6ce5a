"""Loads the named queries in `queries/*.sql` once.

Each query starts with `-- name: <name>` and a one-line comment saying what it does;
everything up to the next `-- name:` is the statement. Python never assembles SQL.
"""

import re
from functools import cache
from pathlib import Path

_QUERIES_DIR = Path(__file__).with_name("queries")
_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def queries() -> dict[str, str]:
    named: dict[str, str] = {}
    for path in sorted(_QUERIES_DIR.glob("*.sql")):
        parts = _NAME_LINE.split(path.read_text())
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in named:
                raise ValueError(f"query {name} is defined twice ({path.name})")
            named[name] = body.strip()
    return named


def query(name: str) -> str:
    return queries()[name]
