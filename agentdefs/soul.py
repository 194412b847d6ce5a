"""Soul documents: an agent's persona, as markdown with YAML frontmatter.

Pure functions of the text (no I/O), used by the API (`GET /api/agent/soul`,
`POST /api/agent/soul/validate`) and by the worker, which projects a valid soul into
its agent's instructions and records the digest in the run's trace.

- The frontmatter takes only `version`, `role` and the lists `tone`, `principles`,
  `constraints`, `memory_policy`, `collaboration`, `tags`. A field that belongs
  elsewhere (the agent's tools or model, the task runtime, the session) is refused
  saying where it belongs; any other field is refused as unsupported.
- The body may not have a section (a heading) that belongs elsewhere either.
- The document, and its body, have a size limit.
- Everything wrong is a diagnostic with its code, field or section, line and column
  (1-based, in the whole document), severity; a document with an error is invalid and
  is not projected.
- The digest is the sha256 of the canonical form: the frontmatter's fields as sorted,
  compact JSON and the body with normalised line ends and without the blank lines and
  white space around it, so reformatting the YAML does not change it and any change of
  content does.
"""

import hashlib
import json
from collections.abc import Callable
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

DIGEST_PREFIX = "workbench.soul.v1\n"
LIST_FIELDS = ("tone", "principles", "constraints", "memory_policy", "collaboration", "tags")
ALLOWED_FIELDS = ("version", "role", *LIST_FIELDS)
# Fields and sections that belong to another part of the system, and which part.
_OWNERS = {
    **dict.fromkeys(
        (
            "name",
            "provider",
            "model",
            "tools",
            "toolsets",
            "permissions",
            "mcp_servers",
            "hooks",
            "prompt",
            "instructions",
            "lane",
            "routes_to",
            "keywords",
        ),
        "the agent definition (agents file)",
    ),
    **dict.fromkeys(("capabilities", "capability", "skills"), "the agent's capabilities"),
    **dict.fromkeys(
        ("tasks", "task", "task_runs", "run", "claim_token", "claim_token_hash", "credential"),
        "the task runtime",
    ),
    **dict.fromkeys(("session", "lease", "heartbeat", "scheduler"), "the session runtime"),
    **dict.fromkeys(("channels", "network", "peers"), "coordination channels"),
    **dict.fromkeys(("spawn", "budget", "spawn_budget"), "spawning"),
    **dict.fromkeys(("config", "env", "settings", "secrets"), "configuration"),
}
Severity = Literal["error", "warning", "info"]
ValidationStatus = Literal["missing", "valid", "invalid"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SoulLimits(_Model):
    max_bytes: int = 32 * 1024
    max_body_bytes: int = 16 * 1024
    # The most the projection into an agent's instructions takes.
    context_projection_bytes: int = 2 * 1024


class Diagnostic(_Model):
    code: str
    message: str
    severity: Severity = "error"
    field: str | None = None
    section: str | None = None
    line: int | None = None
    column: int | None = None
    source_path: str
    owner_surface: str | None = None


class Frontmatter(_Model):
    version: str | None = None
    role: str | None = None
    tone: list[str] = Field(default_factory=list)
    principles: list[str] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)
    memory_policy: list[str] = Field(default_factory=list)
    collaboration: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


class Soul(_Model):
    """One document, parsed: valid (with its digest) or not (with why)."""

    present: bool
    valid: bool
    validation_status: ValidationStatus
    source_path: str
    digest: str | None
    frontmatter: Frontmatter
    body: str
    diagnostics: list[Diagnostic]
    limits: SoulLimits


def missing(source_path: str = "", limits: SoulLimits | None = None) -> Soul:
    """No soul: valid, and nothing to project."""
    return Soul(
        present=False,
        valid=True,
        validation_status="missing",
        source_path=source_path,
        digest=None,
        frontmatter=Frontmatter(),
        body="",
        diagnostics=[],
        limits=limits or SoulLimits(),
    )


def parse(text: str, source_path: str = "SOUL.md", limits: SoulLimits | None = None) -> Soul:
    limits = limits or SoulLimits()
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    found: list[Diagnostic] = []

    def problem(code: str, message: str, **where: object) -> None:
        found.append(Diagnostic(code=code, message=message, source_path=source_path, **where))

    size = len(text.encode())
    if size > limits.max_bytes:
        problem(
            "oversized_document",
            f"the document is {size} bytes; at most {limits.max_bytes}",
            line=1,
            column=1,
        )
        return _result(source_path, limits, Frontmatter(), "", found)
    metadata, body, body_line = _split(text)
    if metadata is None and text.startswith("---\n"):
        problem(
            "malformed_frontmatter", "the frontmatter has no closing --- line", line=1, column=1
        )
        return _result(source_path, limits, Frontmatter(), "", found)
    # Blank lines around the body are layout, not content.
    body_line += len(body) - len(body.lstrip("\n"))
    body = body.strip("\n").rstrip()
    body_size = len(body.encode())
    if body_size > limits.max_body_bytes:
        problem(
            "oversized_body",
            f"the body is {body_size} bytes; at most {limits.max_body_bytes}",
            line=body_line,
            column=1,
        )
    front = _frontmatter(metadata or "", problem)
    for offset, line in enumerate(body.split("\n")):
        section = _heading(line)
        owner = _OWNERS.get(section or "")
        if owner is not None:
            problem(
                "reserved_section",
                f"the section {section!r} belongs to {owner}",
                section=section,
                line=body_line + offset,
                column=1,
                owner_surface=owner,
            )
    return _result(source_path, limits, front, body, found)


def digest(front: Frontmatter, body: str) -> str:
    canonical = json.dumps(front.model_dump(), sort_keys=True, separators=(",", ":"))
    content = f"{DIGEST_PREFIX}{canonical}\n{body}".encode()
    return "sha256:" + hashlib.sha256(content).hexdigest()


def project(soul: Soul) -> tuple[str, bool]:
    """The soul as it joins an agent's instructions, within the projection limit, and
    whether it was cut. Cut the same way every time: the body first, then the last
    items of memory_policy, collaboration, constraints, principles and tone, in that
    order; the role last."""
    front = soul.frontmatter.model_copy(deep=True)
    body = soul.body
    limit = soul.limits.context_projection_bytes

    def render() -> str:
        lines = [f"## Soul ({soul.digest})"]
        if front.role:
            lines.append(f"Role: {front.role}")
        if front.tone:
            lines.append(f"Tone: {', '.join(front.tone)}")
        for name in ("principles", "constraints", "collaboration", "memory_policy"):
            items = getattr(front, name)
            if items:
                lines.append(f"{name.replace('_', ' ').capitalize()}:")
                lines += [f"- {item}" for item in items]
        if body:
            lines += ["", body]
        return "\n".join(lines)

    text = render()
    if len(text.encode()) <= limit:
        return text, False
    body = ""
    for name in ("memory_policy", "collaboration", "constraints", "principles", "tone"):
        items = getattr(front, name)
        while items and len(render().encode()) > limit:
            items.pop()
    while front.role and len(render().encode()) > limit:
        front.role = front.role[:-1]
    return render().encode()[:limit].decode(errors="ignore"), True


def _result(
    source_path: str,
    limits: SoulLimits,
    front: Frontmatter,
    body: str,
    found: list[Diagnostic],
) -> Soul:
    valid = not any(d.severity == "error" for d in found)
    return Soul(
        present=True,
        valid=valid,
        validation_status="valid" if valid else "invalid",
        source_path=source_path,
        digest=digest(front, body) if valid else None,
        frontmatter=front if valid else Frontmatter(),
        body=body if valid else "",
        diagnostics=found,
        limits=limits,
    )


def _split(text: str) -> tuple[str | None, str, int]:
    """(frontmatter or None, body, the body's first line). No frontmatter: all body."""
    if not text.startswith("---\n"):
        return None, text, 1
    lines = text.split("\n")
    for index in range(1, len(lines)):
        if lines[index].strip() == "---":
            return "\n".join(lines[1:index]), "\n".join(lines[index + 1 :]), index + 2
    return None, "", 1


def _frontmatter(metadata: str, report: Callable[..., None]) -> Frontmatter:
    """The frontmatter's allowed fields; `report(code, message, **where)` hears of the
    rest."""
    if not metadata.strip():
        return Frontmatter()
    try:
        root = yaml.compose(metadata, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        report(
            "malformed_frontmatter",
            f"the frontmatter is not valid YAML: {getattr(error, 'problem', None) or 'unreadable'}",
            line=mark.line + 2 if mark else 2,
            column=mark.column + 1 if mark else 1,
        )
        return Frontmatter()
    if not isinstance(root, yaml.MappingNode):
        report("malformed_frontmatter", "the frontmatter must be a mapping", line=2, column=1)
        return Frontmatter()
    values: dict[str, object] = {}
    for key_node, value_node in root.value:
        key = str(key_node.value)
        where = {
            "field": key,
            "line": key_node.start_mark.line + 2,
            "column": key_node.start_mark.column + 1,
        }
        if key in values:
            report("duplicate_field", f"the field {key!r} is given twice", **where)
        elif key not in ALLOWED_FIELDS:
            owner = _OWNERS.get(key)
            if owner is None:
                report("unsupported_field", f"the field {key!r} is not a soul field", **where)
            else:
                report(
                    "forbidden_field",
                    f"the field {key!r} belongs to {owner}",
                    owner_surface=owner,
                    **where,
                )
        else:
            value = _value(key, value_node)
            if value is None:
                kind = (
                    "a string"
                    if key == "role"
                    else "a string or number"
                    if key == "version"
                    else "a list of strings"
                )
                report("invalid_field_type", f"the field {key!r} must be {kind}", **where)
            else:
                values[key] = value
    return Frontmatter.model_validate(values)


def _value(key: str, node: yaml.Node) -> object | None:
    """The field's value, or None when it is of the wrong type."""
    if key == "role":
        return node.value.strip() if _is_scalar(node, ("str",)) else None
    if key == "version":
        return node.value.strip() if _is_scalar(node, ("str", "int", "float")) else None
    if _is_scalar(node, ("str",)):  # one item may be written without the list
        return [node.value.strip()] if node.value.strip() else []
    if isinstance(node, yaml.SequenceNode) and all(
        _is_scalar(item, ("str",)) for item in node.value
    ):
        return [item.value.strip() for item in node.value if item.value.strip()]
    return None


def _is_scalar(node: yaml.Node, kinds: tuple[str, ...]) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.rsplit(":", 1)[-1] in kinds


def _heading(line: str) -> str | None:
    """A markdown heading's title as a key (`## Claim Token` -> `claim_token`)."""
    stripped = line.strip()
    level = len(stripped) - len(stripped.lstrip("#"))
    if level == 0 or level > 6 or not stripped[level:].startswith(" "):
        return None
    title = stripped[level:].strip().strip("#").strip().lower()
    key = "".join(c if c.isalnum() else "_" for c in title)
    return "_".join(part for part in key.split("_") if part) or None
