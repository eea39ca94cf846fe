"""`clawmesh status`'s federation line says what an operator must act on."""

from __future__ import annotations

from clawmesh.cli._client_cmds import federation_line


def test_the_link_states_read_as_an_operator_needs_them() -> None:
    assert (
        federation_line({"region": "sg", "link": {"links": 1}})
        == "federation region sg  link to the hub up (1)"
    )
    down = federation_line(
        {"region": "sg", "link": {"links": 0, "lastClose": "Leafnode connection closed: EOF"}}
    )
    assert "DOWN (last: Leafnode connection closed: EOF)" in down and "local traffic is served" in down
    loop = federation_line(
        {"region": "sg", "link": {"links": 1, "loop": "Loop detected for leafnode account"}}
    )
    assert "TOPOLOGY LOOP: Loop detected for leafnode account" in loop
    assert "link state unknown" in federation_line({"region": "sg"})
