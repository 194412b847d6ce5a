"""Soul documents: the frontmatter allowlist, diagnostics with their place in the
document, the canonical digest, and the bounded projection into instructions."""

import pytest

from agentdefs import soul
from agentdefs.soul import SoulLimits

VALID = """---
version: 2
role: Incident analyst
tone: [calm, precise]
principles:
  - Evidence first.
  - Say what is unknown.
constraints: Read only.
tags: [ops]
---

Answer briefly; the timeline first.
"""


def _codes(parsed: soul.Soul) -> list[tuple[str, str | None, int | None, int | None]]:
    return [(d.code, d.field or d.section, d.line, d.column) for d in parsed.diagnostics]


def test_a_valid_soul_has_its_fields_body_and_digest() -> None:
    parsed = soul.parse(VALID, source_path="souls/analyst.md")
    assert (parsed.present, parsed.valid, parsed.validation_status) == (True, True, "valid")
    front = parsed.frontmatter
    assert (front.version, front.role) == ("2", "Incident analyst")
    assert front.tone == ["calm", "precise"]
    assert front.constraints == ["Read only."]  # one item may be written without a list
    assert parsed.body == "Answer briefly; the timeline first."
    assert parsed.digest is not None and parsed.digest.startswith("sha256:")
    assert parsed.diagnostics == [] and parsed.source_path == "souls/analyst.md"


def test_the_digest_is_of_the_content_not_its_layout() -> None:
    reformatted = """---
tags:
- ops
constraints: [Read only.]
principles: ["Evidence first.", "Say what is unknown."]
tone:
  - calm
  - precise
role: "Incident analyst"
version: "2"
---
Answer briefly; the timeline first.\r\n\r\n
"""
    assert soul.parse(reformatted).digest == soul.parse(VALID).digest
    changed = VALID.replace("briefly", "at length")
    assert soul.parse(changed).digest != soul.parse(VALID).digest
    assert (
        soul.parse(VALID.replace("calm, precise", "precise, calm")).digest
        != soul.parse(VALID).digest
    )


def test_each_problem_is_a_diagnostic_where_it_is() -> None:
    document = """---
role: Analyst
tools: [http_get]
claim_token: abc
colour: blue
tone: 3
role: Again
---
# Persona

Be brief.

## Claim Token
"""
    parsed = soul.parse(document)
    assert not parsed.valid and parsed.validation_status == "invalid"
    assert parsed.digest is None and parsed.body == ""
    assert _codes(parsed) == [
        ("forbidden_field", "tools", 3, 1),
        ("forbidden_field", "claim_token", 4, 1),
        ("unsupported_field", "colour", 5, 1),
        ("invalid_field_type", "tone", 6, 1),
        ("duplicate_field", "role", 7, 1),
        ("reserved_section", "claim_token", 13, 1),
    ]
    owners = {d.field or d.section: d.owner_surface for d in parsed.diagnostics}
    assert owners["tools"] == "the agent definition (agents file)"
    assert owners["claim_token"] == "the task runtime"
    assert all(d.severity == "error" for d in parsed.diagnostics)
    assert "abc" not in str(parsed.diagnostics)  # values are never echoed


@pytest.mark.parametrize(
    ("document", "code", "line", "column"),
    [
        ("---\nrole: [unclosed\n---\nbody\n", "malformed_frontmatter", 2, 16),
        ("---\nrole: x\nno closing line\n", "malformed_frontmatter", 1, 1),
        ("---\n- a list\n---\n", "malformed_frontmatter", 2, 1),
        ("---\nrole: {a: 1}\n---\n", "invalid_field_type", 2, 1),
        ("---\ntone: [ok, [nested]]\n---\n", "invalid_field_type", 2, 1),
    ],
)
def test_malformed_frontmatter(document: str, code: str, line: int, column: int) -> None:
    parsed = soul.parse(document)
    assert not parsed.valid
    assert [(d.code, d.line, d.column) for d in parsed.diagnostics][:1] == [(code, line, column)]


def test_size_limits() -> None:
    limits = SoulLimits(max_bytes=200, max_body_bytes=50)
    body = "---\nrole: x\n---\n" + "word " * 20
    [too_long] = soul.parse(body, limits=limits).diagnostics
    assert (too_long.code, too_long.line) == ("oversized_body", 4)
    [too_big] = soul.parse("x" * 201, limits=limits).diagnostics
    assert too_big.code == "oversized_document"


def test_no_frontmatter_is_all_body_and_missing_is_valid() -> None:
    parsed = soul.parse("Just be kind.")
    assert parsed.valid and parsed.body == "Just be kind." and parsed.frontmatter.role is None
    absent = soul.missing()
    assert (absent.present, absent.valid, absent.validation_status) == (False, True, "missing")


def test_the_projection_is_bounded_and_cut_the_same_way_every_time() -> None:
    parsed = soul.parse(VALID)
    text, cut = soul.project(parsed)
    assert not cut and "Role: Incident analyst" in text and text.endswith("timeline first.")
    assert parsed.digest in text
    small = parsed.model_copy(update={"limits": SoulLimits(context_projection_bytes=150)})
    first, cut = soul.project(small)
    assert cut and len(first.encode()) <= 150
    assert "timeline" not in first  # the body goes first
    assert "Role: Incident analyst" in first  # the role last
    assert soul.project(small) == (first, True)
