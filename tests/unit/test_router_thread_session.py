"""A message of a thread with a session of its own (`sessionThreadId`, Slack's channel threads)
is routed by its chat, as OpenClaw's Slack plugin routes it (the bindings see `peer`, never the
thread), and lands in the routed session key + `:thread:<id>` (`resolveThreadSessionKeys`,
called by the plugin's `resolveSlackRoutingContext` on its route); the route's main session and
`lastRoutePolicy` stay the chat's."""

from __future__ import annotations

from clawmesh.checks import default_checks
from clawmesh.config import parse_config
from clawmesh.routing import resolve_route, resolve_thread_session_keys
from clawmesh.wire import InboundMessage, Peer
from clawmesh_router.app import route_message

CONFIG = parse_config(
    {
        "agents": {"list": [{"id": "main", "default": True}, {"id": "ops"}]},
        "bindings": [
            {"agentId": "ops", "match": {"channel": "slack", "peer": {"kind": "channel", "id": "C200"}}}
        ],
    },
    checks=default_checks(),
    env={},
)


def _message(peer: Peer, thread: str | None, **extra: str) -> InboundMessage:
    return InboundMessage(id="t1", channel="slack", peer=peer, session_thread_id=thread, **extra)  # type: ignore[arg-type]


def test_a_thread_is_its_chats_route_with_a_thread_suffix() -> None:
    base = resolve_route(CONFIG, channel="slack", peer={"kind": "channel", "id": "C200"})
    route = route_message(CONFIG, _message(Peer(kind="channel", id="C200"), "1700000000.000100"))
    assert (route.agent_id, route.matched_by) == ("ops", "binding.peer")  # the channel's binding
    assert route.session_key == "agent:ops:slack:channel:c200:thread:1700000000.000100"
    assert route.session_key == resolve_thread_session_keys(base.session_key, "1700000000.000100")[0]
    assert (route.main_session_key, route.last_route_policy) == (base.main_session_key, "session")


def test_without_a_thread_and_with_a_chosen_session_nothing_changes() -> None:
    plain = route_message(CONFIG, _message(Peer(kind="channel", id="C300"), None))
    assert plain.session_key == "agent:main:slack:channel:c300"
    chosen = route_message(
        CONFIG,
        _message(Peer(kind="direct", id="U1"), "1.5", agent_id="main", session_key="agent:main:api:x"),
    )
    assert chosen.session_key == "agent:main:api:x"


def test_a_dm_based_session_keeps_its_main_policy() -> None:
    # dmScope main: the DM's key is the main key; a thread of it (were one routed so) keeps
    # lastRoutePolicy "main", as the plugin's route object does
    route = route_message(CONFIG, _message(Peer(kind="direct", id="U1"), "2.5"))
    assert route.session_key == "agent:main:main:thread:2.5"
    assert route.last_route_policy == "main"
