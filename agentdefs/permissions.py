"""The permission rule of spawning: a child may hold no more than its parent, in each
of the six kinds of permission. Pure: the API checks a spawn with it before the
transaction that creates the child, and again inside it, against the parent as locked.
"""

from collections.abc import Mapping, Sequence

PERMISSION_KINDS = (
    "tools",
    "skills",
    "mcp_servers",
    "network_channels",
    "sandbox_profiles",
    "workspace_paths",
)


def widening(
    parent: Mapping[str, Sequence[str]], child: Mapping[str, Sequence[str]]
) -> list[dict[str, str]]:
    """Each atom the child asks for that its parent does not hold, as {kind, atom}, in
    kind order then atom order: empty when the child's permissions are a subset of its
    parent's in every kind. An atom the parent does not know (a tool no lane has, a
    misspelt channel) is such an atom: an unknown counts as widening. A kind outside the
    six is refused whole."""
    found = [{"kind": kind, "atom": "*"} for kind in sorted(set(child) - set(PERMISSION_KINDS))]
    for kind in PERMISSION_KINDS:
        held = set(parent.get(kind, ()))
        found += [{"kind": kind, "atom": atom} for atom in sorted(set(child.get(kind, ())) - held)]
    return found
