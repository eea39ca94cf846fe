"""Resolved settings (`config.settings`, per-agent limits) and the domain checks handed to the loader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import (
    Config,
    ConfigError,
    ConfigHolder,
    ExecSettings,
    GatewaySettings,
    NatsSettings,
    NodeSettings,
    Problem,
    RuntimeSettings,
    SessionSettings,
    load_config,
    parse_config,
)


def parse(data: dict[str, Any]) -> Config:
    return parse_config(data, checks=default_checks(), env={})


def errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(data)
    return [str(p) for p in err.value.problems]


class TestDefaults:
    def test_an_empty_config_gets_every_default(self) -> None:
        settings = parse({}).settings
        assert settings.runtime == RuntimeSettings(
            lease_seconds=10.0,
            turn_timeout=600.0,
            max_turns_in_flight=64,
            history_limit=50,
            route_wait=5.0,
            tool_iterations=16,
        )
        assert settings.runtime.reply_wait == 630.0
        assert settings.exec == ExecSettings(timeout=120.0, max_output_bytes=200_000)
        assert settings.nodes == NodeSettings(
            heartbeat_seconds=5.0, offline_after_missed=3, invoke_margin=15.0
        )
        assert settings.gateway == GatewaySettings(max_body_bytes=1024 * 1024)
        assert settings.nats == NatsSettings(url="nats://127.0.0.1:4222", subject_prefix="cm", replicas=1)
        assert settings.session == SessionSettings(dm_scope="main", group_scope="per-group")

    def test_empty_sections_are_the_same_as_absent_ones(self) -> None:
        sections = {
            "runtime": {},
            "tools": {"exec": {}},
            "nodes": {},
            "gateway": {},
            "nats": {},
            "session": {},
        }
        assert parse(sections).settings == parse({}).settings

    def test_agents_inherit_the_loop_cap_and_model_timeout(self) -> None:
        [agent] = parse({}).agents
        assert agent.tool_iterations == 16
        assert agent.model_timeout is None
        assert agent.max_concurrent == 4


class TestOverrides:
    def test_every_key_is_read(self) -> None:
        settings = parse(
            {
                "runtime": {
                    "turnLeaseSeconds": 3,
                    "turnTimeoutSeconds": 90,
                    "maxTurnsInFlight": 8,
                    "historyLimit": 20,
                    "routeWaitSeconds": 1.5,
                    "toolIterations": 4,
                },
                "tools": {"exec": {"timeoutSec": 30, "maxOutputBytes": 1000}},
                "nodes": {"heartbeatSeconds": 0.5, "offlineAfterMissed": 5, "invokeTimeoutSeconds": 2},
                "gateway": {"maxBodyBytes": 2000},
                "nats": {"url": ["nats://a:1", "nats://b:1"], "subjectPrefix": " acme ", "replicas": 3},
                "session": {"dmScope": "per-peer", "groupScope": "main", "mainKey": "Home"},
            }
        ).settings
        assert settings.runtime == RuntimeSettings(
            lease_seconds=3,
            turn_timeout=90,
            max_turns_in_flight=8,
            history_limit=20,
            route_wait=1.5,
            tool_iterations=4,
        )
        assert settings.runtime.reply_wait == 120.0
        assert settings.exec == ExecSettings(timeout=30, max_output_bytes=1000)
        assert settings.nodes == NodeSettings(heartbeat_seconds=0.5, offline_after_missed=5, invoke_margin=2)
        assert settings.gateway.max_body_bytes == 2000
        assert settings.nats == NatsSettings(
            url=["nats://a:1", "nats://b:1"], subject_prefix="acme", replicas=3
        )
        assert settings.session == SessionSettings(dm_scope="per-peer", group_scope="main", main_key="Home")

    def test_environment_overrides_reach_the_settings(self) -> None:
        config = parse_config(
            {"nats": {"replicas": 1}},
            checks=(),
            env={
                "CLAWMESH_NATS_REPLICAS": "3",
                "CLAWMESH_SUBJECT_PREFIX": "edge",
                "CLAWMESH_NATS_URL": "nats://x:1",
            },
        )
        assert config.settings.nats == NatsSettings(url="nats://x:1", subject_prefix="edge", replicas=3)
        assert config.subject_prefix == "edge"

    def test_tool_loop_cap_per_agent_then_global_then_runtime(self) -> None:
        config = parse(
            {
                "runtime": {"toolIterations": 9},
                "agents": {
                    "list": [
                        {"id": "own", "default": True, "tools": {"maxIterations": 2}},
                        {"id": "global"},
                    ]
                },
                "tools": {"maxIterations": 5},
            }
        )
        assert [(a.id, a.tool_iterations) for a in config.agents] == [("own", 2), ("global", 5)]
        assert parse({"runtime": {"toolIterations": 9}}).agents[0].tool_iterations == 9
        # an agent made from the defaults (no roster) gets the same resolution
        assert parse({"tools": {"maxIterations": 7}}).agent_view("anyone").tool_iterations == 7  # type: ignore[union-attr]

    def test_model_timeout_and_concurrency_come_from_the_agent_defaults(self) -> None:
        config = parse(
            {"agents": {"defaults": {"timeoutSeconds": 45, "maxConcurrent": 2}, "list": [{"id": "a"}]}}
        )
        assert (config.agents[0].model_timeout, config.agents[0].max_concurrent) == (45, 2)

    def test_settings_are_frozen(self) -> None:
        config = parse({})
        with pytest.raises(AttributeError):
            config.settings.runtime.turn_timeout = 1  # type: ignore[misc]
        with pytest.raises(AttributeError, match="immutable"):
            config.warnings = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"runtime": {"turnLeaseSeconds": 0}}, "$.runtime.turnLeaseSeconds"),
        ({"runtime": {"turnTimeoutSeconds": 0}}, "$.runtime.turnTimeoutSeconds"),
        ({"runtime": {"maxTurnsInFlight": 0}}, "$.runtime.maxTurnsInFlight"),
        ({"runtime": {"historyLimit": 0}}, "$.runtime.historyLimit"),
        ({"runtime": {"routeWaitSeconds": 0}}, "$.runtime.routeWaitSeconds"),
        ({"runtime": {"toolIterations": 0}}, "$.runtime.toolIterations"),
        ({"tools": {"exec": {"timeoutSec": 0}}}, "$.tools.exec.timeoutSec"),
        ({"tools": {"exec": {"maxOutputBytes": 0}}}, "$.tools.exec.maxOutputBytes"),
        ({"tools": {"maxIterations": 0}}, "$.tools.maxIterations"),
        ({"nodes": {"heartbeatSeconds": 0}}, "$.nodes.heartbeatSeconds"),
        ({"nodes": {"offlineAfterMissed": 0}}, "$.nodes.offlineAfterMissed"),
        ({"nodes": {"invokeTimeoutSeconds": 0}}, "$.nodes.invokeTimeoutSeconds"),
        ({"gateway": {"maxBodyBytes": 0}}, "$.gateway.maxBodyBytes"),
        ({"nats": {"replicas": 0}}, "$.nats.replicas"),
        ({"agents": {"defaults": {"maxConcurrent": 0}}}, "$.agents.defaults.maxConcurrent"),
        ({"agents": {"defaults": {"timeoutSeconds": 0}}}, "$.agents.defaults.timeoutSeconds"),
        ({"agents": {"list": [{"id": "a", "maxConcurrent": 0}]}}, "$.agents.list[0].maxConcurrent"),
        (
            {"agents": {"list": [{"id": "a", "tools": {"maxIterations": 0}}]}},
            "$.agents.list[0].tools.maxIterations",
        ),
        (
            {"agents": {"entries": {"a": {"tools": {"maxIterations": 0}}}}},
            "$.agents.entries.a.tools.maxIterations",
        ),
        (
            {"models": {"providers": {"my llm": {"timeoutSeconds": 0}}}},
            "$.models.providers['my llm'].timeoutSeconds",
        ),
    ],
)
def test_zero_is_refused_where_it_would_mean_the_default(data: dict[str, Any], path: str) -> None:
    [found] = errors(data)
    assert found.startswith(f"{path}: must be greater than 0, got 0 (leave it out for the default")


def test_negative_values_are_refused_and_every_one_is_listed() -> None:
    found = errors({"runtime": {"turnTimeoutSeconds": -1, "historyLimit": -5}, "nats": {"replicas": 0}})
    assert [f.split(":")[0] for f in found] == [
        "$.runtime.turnTimeoutSeconds",
        "$.runtime.historyLimit",
        "$.nats.replicas",
    ]
    assert (
        found[0]
        == "$.runtime.turnTimeoutSeconds: must be greater than 0, got -1 (leave it out for the default, 600)"
    )


class TestDomainChecks:
    BAD_BINDING: ClassVar[dict[str, Any]] = {
        "agents": {"list": [{"id": "a"}]},
        "bindings": [{"agentId": "ghost", "match": {"channel": "d"}}],
    }
    HOST_NETWORK: ClassVar[dict[str, Any]] = {
        "agents": {"defaults": {"sandbox": {"docker": {"network": "host"}}}}
    }

    def test_config_runs_only_the_checks_it_is_given(self) -> None:
        assert parse_config(self.BAD_BINDING, checks=(), env={}).agent_ids == ("a",)
        assert parse_config(self.HOST_NETWORK, checks=(), env={}).agent_ids == ("main",)

    def test_the_default_checks_are_routings_and_sandboxes(self) -> None:
        assert any("unknown agent 'ghost'" in e for e in errors(self.BAD_BINDING))
        assert any("network 'host' is refused" in e for e in errors(self.HOST_NETWORK))

    def test_a_checks_warnings_land_in_the_config_it_judged(self) -> None:
        def advice(config: Config) -> list[Problem]:
            return [Problem("$.agents", f"{len(config.agents)} agent(s)", "warning")]

        config = parse_config({}, checks=(advice,), env={})
        assert Problem("$.agents", "1 agent(s)", "warning") in config.warnings
        assert config.checks == (advice,)

    def test_loading_requires_the_checks(self, tmp_path: Path) -> None:
        with pytest.raises(TypeError, match="checks"):
            load_config(tmp_path / "c.json", env={})  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="checks"):
            ConfigHolder.load(tmp_path / "c.json", {})  # type: ignore[call-arg]

    def test_reload_runs_the_checks_the_config_was_loaded_with(self, tmp_path: Path) -> None:
        path = tmp_path / "clawmesh.json"
        path.write_text('{"agents": {"list": [{"id": "a"}]}}')
        holder = ConfigHolder.load(path, {"HOME": str(tmp_path)}, checks=default_checks())
        path.write_text(
            '{"agents": {"list": [{"id": "a"}]}, "bindings": [{"agentId": "ghost", "match": {"channel": "d"}}]}'
        )
        result = holder.reload()
        assert not result.ok and any("unknown agent 'ghost'" in e for e in result.errors)
        assert holder.current.document.bindings is None  # the good config stays


def test_config_package_imports_no_other_domain() -> None:
    code = (
        "import sys, clawmesh.config; "
        "print(sorted(m for m in sys.modules if m.startswith('clawmesh.') and m.split('.')[1] not in ('config', 'ids')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_stream_size_bounds_come_from_nats_settings() -> None:
    from clawmesh.bus._service import layout_for

    holder = ConfigHolder.fixed(
        {"nats": {"sessionsMaxBytes": 5_000_000, "inboundMaxBytes": 3_000_000}}, {}, checks=default_checks()
    )
    layout = layout_for(holder)
    assert (layout.sessions_max_bytes, layout.inbound_max_bytes) == (5_000_000, 3_000_000)
    assert layout.dead_letters_max_bytes == NatsSettings.dead_letters_max_bytes
    with pytest.raises(ConfigError) as err:
        parse_config({"nats": {"deadLettersMaxBytes": 0}}, env={}, checks=default_checks())
    assert "$.nats.deadLettersMaxBytes: must be greater than 0" in str(err.value)
