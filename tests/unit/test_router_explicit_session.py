"""The router honours a session key the caller chose (the OpenAI-compatible API's private
sessions) only for the agent the message names, and refuses one of another agent."""

from __future__ import annotations

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import parse_config
from clawmesh.errors import ClawmeshError
from clawmesh.wire import InboundMessage, Peer
from clawmesh_router.app import route_message

CONFIG = parse_config(
    {"agents": {"list": [{"id": "home", "default": True}, {"id": "work"}]}, "session": {"dmScope": "main"}},
    checks=default_checks(),
    env={},
)


def _message(session_key: str | None, agent: str = "home") -> InboundMessage:
    return InboundMessage(
        id="t1", channel="api", peer=Peer(kind="direct", id="alice"), agent_id=agent, session_key=session_key
    )


def test_the_chosen_session_is_used() -> None:
    route = route_message(CONFIG, _message("agent:home:openai-user:alice"))
    assert (route.agent_id, route.session_key, route.main_session_key) == (
        "home",
        "agent:home:openai-user:alice",
        "agent:home:main",
    )
    assert route.matched_by == "explicit"


def test_without_one_routing_derives_it_as_before() -> None:
    assert route_message(CONFIG, _message(None)).session_key == "agent:home:main"  # dmScope main


@pytest.mark.parametrize("key", ["agent:work:openai:x", "not-a-key"])
def test_a_session_of_another_agent_is_refused(key: str) -> None:
    with pytest.raises(ClawmeshError) as refused:
        route_message(CONFIG, _message(key))
    assert (
        refused.value.code == "ROUTING_ERROR" and "is not a session of agent 'home'" in refused.value.message
    )
