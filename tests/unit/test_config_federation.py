"""`gateway.federation`'s timing keys: a remote turn's keep-alive and idle timeout, checked
with their paths, defaults applied."""

from __future__ import annotations

from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import ConfigError, parse_config


def _gateway(federation: dict[str, Any] | None) -> Any:
    doc: dict[str, Any] = {
        "agents": {"list": [{"id": "a", "default": True, "model": "echo/e"}]},
        "gateway": {"region": "eu", **({"federation": federation} if federation is not None else {})},
    }
    return parse_config(doc, env={"HOME": "/home/u"}, checks=default_checks()).settings.gateway


def test_defaults_ask_for_a_keepalive_every_5s_and_give_up_after_30s() -> None:
    for federation in (None, {}):
        gw = _gateway(federation)
        assert (gw.keepalive_seconds, gw.idle_timeout_seconds) == (5.0, 30.0)


def test_both_can_be_set() -> None:
    gw = _gateway({"keepaliveSeconds": 0.5, "idleTimeoutSeconds": 4})
    assert (gw.keepalive_seconds, gw.idle_timeout_seconds) == (0.5, 4.0)


def test_a_slow_keepalive_raises_the_default_idle_timeout_with_it() -> None:
    # a lost keep-alive must not fail a turn that still runs: at least two periods
    gw = _gateway({"keepaliveSeconds": 20})
    assert (gw.keepalive_seconds, gw.idle_timeout_seconds) == (20.0, 40.0)


@pytest.mark.parametrize(
    ("federation", "path", "words"),
    [
        (
            {"keepaliveSeconds": 0},
            "$.gateway.federation.keepaliveSeconds",
            "expected 0 < seconds <= 60, got 0",
        ),
        ({"keepaliveSeconds": 61}, "$.gateway.federation.keepaliveSeconds", "got 61"),
        (
            {"keepaliveSeconds": 5, "idleTimeoutSeconds": 9},
            "$.gateway.federation.idleTimeoutSeconds",
            "expected twice keepaliveSeconds (10) <= seconds <= 3600, got 9",
        ),
        ({"idleTimeoutSeconds": 7200}, "$.gateway.federation.idleTimeoutSeconds", "got 7200"),
        (
            {"idleTimeoutSeconds": "long"},
            "$.gateway.federation.idleTimeoutSeconds",
            "expected a number, got a string",
        ),
    ],
)
def test_bad_values_are_refused_with_their_path(federation: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _gateway(federation)
    assert [(p.path, p.message.endswith(words)) for p in caught.value.problems] == [(path, True)], [
        (p.path, p.message) for p in caught.value.problems
    ]


def test_failover_names_a_region_and_the_agents_that_may_run_there() -> None:
    gw = _gateway({"failover": {"region": "SG", "agents": ["main", "work-*"]}})
    assert (gw.failover_region, gw.failover_agents) == ("sg", ("main", "work-*"))
    assert _gateway(None).failover_region is None  # none by default


@pytest.mark.parametrize(
    ("failover", "path", "words"),
    [
        (
            {"region": "eu", "agents": ["*"]},
            "$.gateway.federation.failover.region",
            "is this gateway's own region",
        ),
        (
            {"region": "hub", "agents": ["*"]},
            "$.gateway.federation.failover.region",
            "not a valid region name",
        ),
        ({"region": "sg"}, "$.gateway.federation.failover.agents", "name the agents that may run there"),
        ({"agents": ["*"]}, "$.gateway.federation.failover", "region"),
    ],
)
def test_bad_failover_settings_are_refused_with_their_path(
    failover: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _gateway({"failover": failover})
    assert [(p.path, words in p.message) for p in caught.value.problems] == [(path, True)], [
        (p.path, p.message) for p in caught.value.problems
    ]


def test_failover_needs_this_gateway_to_be_federated() -> None:
    doc = {
        "agents": {"list": [{"id": "a", "default": True, "model": "echo/e"}]},
        "gateway": {"federation": {"failover": {"region": "sg", "agents": ["*"]}}},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, env={"HOME": "/home/u"}, checks=default_checks())
    assert [(p.path, "needs gateway.region" in p.message) for p in caught.value.problems] == [
        ("$.gateway.federation.failover", True)
    ]
