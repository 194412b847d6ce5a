"""The permission rule of spawning: a subset in each of the six kinds, unknowns widen."""

from agentdefs.permissions import PERMISSION_KINDS, widening

PARENT = {"tools": ["http_get", "read_artifact"], "network_channels": ["ops-room"]}


def test_a_subset_in_every_kind_widens_nothing() -> None:
    assert widening(PARENT, {"tools": ["read_artifact"]}) == []
    assert widening(PARENT, {kind: [] for kind in PERMISSION_KINDS}) == []
    assert widening(PARENT, PARENT) == []


def test_each_atom_the_parent_lacks_is_named_in_a_fixed_order() -> None:
    child = {
        "workspace_paths": ["/etc"],
        "tools": ["write_artifact", "read_artifact", "propose_change"],
        "skills": ["anything"],  # the parent has no skills at all
    }
    assert widening(PARENT, child) == [
        {"kind": "tools", "atom": "propose_change"},
        {"kind": "tools", "atom": "write_artifact"},
        {"kind": "skills", "atom": "anything"},
        {"kind": "workspace_paths", "atom": "/etc"},
    ]


def test_a_kind_outside_the_six_is_refused_whole() -> None:
    assert widening(PARENT, {"root": ["yes"]}) == [{"kind": "root", "atom": "*"}]
