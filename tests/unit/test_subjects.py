"""Subject builders for the subjects outside the streams: replies, control, KV permissions."""

from __future__ import annotations

from clawmesh.natsauth import nats_users
from clawmesh.wire import Subjects
from clawmesh_gateway.registry import SERVICES, NodeAgent


def test_reply_subjects_of_one_process() -> None:
    s = Subjects("cm")
    assert s.reply("AbC123") == "cm.reply.AbC123"
    assert s.tool_output("AbC123", "0f3a") == "cm.reply.AbC123.tool.0f3a"
    assert s.replies_all == "cm.reply.>"


def test_control_and_kv_subjects() -> None:
    s = Subjects("east")
    assert s.status("node-agent") == "east.ctl.status.node-agent"
    assert s.config_reload == "east.ctl.config.reload"
    assert s.control_all == "east.ctl.>"
    assert s.kv("nodes", "sg-1") == "$KV.east_nodes.sg-1"
    assert s.kv("sessions") == "$KV.east_sessions.>"
    assert s.node_invokes_all == "east.node.*.invoke"


def test_each_service_may_dead_letter_under_its_own_name() -> None:
    users = {u.name: u for u in nats_users("cm", nodes=["sg-1"])}
    assert Subjects().dead_letter(NodeAgent.name) in users["node-sg-1"].publish
    for name in ("ingress", "router", "runner"):
        assert SERVICES[name].name == name
        assert Subjects().dead_letter(name) in users[name].publish
