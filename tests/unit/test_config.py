"""Config loading: JSON5, env substitution, unknown/OpenClaw-only keys, validation, paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import (
    ConfigError,
    config_path,
    load_config,
    parse_config,
    parse_config_text,
    state_dir,
)


def errors(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(data, env=env or {}, checks=default_checks())
    return [str(p) for p in err.value.problems]


def test_empty_config_is_valid_and_routes_to_main() -> None:
    config = parse_config({}, env={}, checks=default_checks())
    assert config.agent_ids == ("main",)
    assert config.default_agent_id == "main"
    assert not config.has_roster


def test_json5_comments_trailing_commas_and_unquoted_keys() -> None:
    text = """
    // my gateway
    {
      agents: { list: [ { id: 'home', default: true, }, ], },
      /* block */ bindings: [],
    }
    """
    assert parse_config_text(text, env={}, checks=default_checks()).agent_ids == ("home",)


def test_duplicate_keys_are_rejected_with_their_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config_text('{"agents": {"list": [{"id": "a", "id": "b"}]}}', env={}, checks=default_checks())
    assert "$.agents.list[0].id: duplicate key" in str(err.value)


def test_json5_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "agents": {\n    "list": [ }\n}\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, env={}, checks=default_checks())
    assert f"{path}:3" in str(err.value) and "not valid JSON5" in str(err.value)


def test_env_substitution_and_escape() -> None:
    config = parse_config(
        {
            "gateway": {"auth": {"token": "${GW_TOKEN}"}},
            "models": {"providers": {"local": {"baseUrl": "$${NOT_SUBSTITUTED}"}}},
        },
        env={"GW_TOKEN": "s3cret"},
        checks=default_checks(),
    )
    assert config.document.gateway.auth.token == "s3cret"  # type: ignore[union-attr]
    assert config.document.models.providers["local"].base_url == "${NOT_SUBSTITUTED}"  # type: ignore[union-attr]


def test_missing_env_variable_is_left_unresolved_with_a_warning() -> None:
    """As OpenClaw: the file loads, the reference stays visible, and the warning names it."""
    config = parse_config(
        {"gateway": {"auth": {"token": "Bearer ${MISSING_TOKEN}"}}}, env={}, checks=default_checks()
    )
    assert config.document.gateway.auth.token == "Bearer ${MISSING_TOKEN}"  # type: ignore[union-attr]
    assert [str(w) for w in config.warnings if w.path.startswith("$.gateway")] == [
        "$.gateway.auth.token: environment variable MISSING_TOKEN is not set; ${MISSING_TOKEN} is left unresolved"
    ]


def test_a_missing_variable_is_an_error_where_its_value_is_needed(tmp_path: Path) -> None:
    from clawmesh.gateway import gateway_token

    config = parse_config(
        {"gateway": {"auth": {"token": "Bearer ${MISSING_TOKEN}"}}},
        env={"CLAWMESH_STATE_DIR": str(tmp_path)},
        checks=default_checks(),
    )
    with pytest.raises(ConfigError) as err:
        gateway_token(config, create=True)
    assert [str(p) for p in err.value.problems] == [
        "$.gateway.auth.token: environment variable MISSING_TOKEN is not set (referenced as ${MISSING_TOKEN})"
    ]
    assert not (tmp_path / "gateway-token").exists()  # no generated token replaces the one asked for


def test_unknown_key_gets_a_suggestion() -> None:
    assert errors({"bindigs": []}) == ["$.bindigs: unknown key 'bindigs' at $ — did you mean 'bindings'?"]
    assert errors({"agents": {"list": [{"id": "a", "worksapce": "/tmp/x"}]}}) == [
        "$.agents.list[0].worksapce: unknown key 'worksapce' at $.agents.list[0] — did you mean 'workspace'?"
    ]


def test_openclaw_only_keys_load_with_one_warning_each() -> None:
    config = parse_config(
        {
            "meta": {"lastTouchedVersion": "2026.9.6"},
            "agents": {
                "defaults": {"compaction": {"mode": "safeguard"}, "userTimezone": "UTC"},
                "list": [{"id": "a", "skills": []}],
            },
            "channels": {"telegram": {"linkPreview": False, "accounts": {"x": {"dmHistoryLimit": 5}}}},
            "session": {"reset": {"mode": "daily"}},
        },
        env={},
        checks=default_checks(),
    )
    paths = sorted(w.path for w in config.warnings if "not implemented" in w.message)
    assert paths == [
        "$.agents.defaults.compaction",
        "$.agents.defaults.userTimezone",
        "$.agents.list[0].skills",
        "$.channels.telegram.accounts.x.dmHistoryLimit",
        "$.channels.telegram.linkPreview",
        "$.meta",
        "$.session.reset",
    ]


def test_all_problems_are_reported_at_once() -> None:
    found = errors(
        {
            "agents": {
                "list": [
                    {"id": "a", "default": True, "workspace": "/tmp/ws"},
                    {"id": "A"},
                    {
                        "id": "b",
                        "default": True,
                        "workspace": "/tmp/ws",
                        "groupChat": {"mentionPatterns": ["(unclosed"]},
                    },
                ]
            },
            "bindings": [
                {"agentId": "ghost", "match": {"channel": "discord"}},
                {"agentId": "a", "match": {"channel": "discord", "peer": {"kind": "room", "id": "1"}}},
            ],
            "gateway": {"port": "80"},
        }
    )
    text = "\n".join(found)
    assert "$.bindings[1].match.peer.kind: expected one of direct|group|channel, got 'room'" in text
    assert "$.gateway.port: expected an integer, got a string" in text
    # structural errors stop before semantic checks; fix them and the rest show up together
    found = errors(
        {
            "agents": {
                "list": [
                    {"id": "a", "default": True, "workspace": "/tmp/ws"},
                    {"id": "A"},
                    {
                        "id": "b",
                        "default": True,
                        "workspace": "/tmp/ws",
                        "groupChat": {"mentionPatterns": ["(unclosed"]},
                    },
                ]
            },
            "bindings": [{"agentId": "ghost", "match": {"channel": "discord"}}],
        }
    )
    text = "\n".join(found)
    assert "$.agents.list[1].id: agent id 'A' resolves to 'a', already used by $.agents.list[0]" in text
    assert "$.agents.list[0].default: more than one agent is marked default: true" in text
    assert "$.agents.list[2].workspace: workspace /tmp/ws is shared with agent 'a'" in text
    assert "$.agents.list[2].groupChat.mentionPatterns[0]: invalid regular expression" in text
    assert "$.bindings[0].agentId: unknown agent 'ghost'" in text


def test_shared_agent_dir_is_an_error() -> None:
    found = errors({"agents": {"list": [{"id": "a", "agentDir": "~/x"}, {"id": "b", "agentDir": "~/x/"}]}})
    assert any("agentDir" in f and "shared with agent 'a'" in f for f in found)


def test_warnings_for_dead_bindings() -> None:
    config = parse_config(
        {
            "agents": {"list": [{"id": "a", "default": True}]},
            "bindings": [
                {"agentId": "a", "match": {"channel": "discord", "accountId": "*"}},
                {"agentId": "a", "match": {"channel": "discord", "accountId": "*", "roles": ["r"]}},
                {"agentId": "a", "match": {"channel": "telegram", "roles": ["r"]}},
                {"agentId": "a", "match": {"channel": "slack", "peer": {"kind": "direct", "id": " "}}},
                {"agentId": "a", "match": {"channel": "slack", "peer": {"kind": "group", "id": "g"}}},
                {
                    "agentId": "a",
                    "match": {"channel": "slack", "peer": {"kind": "channel", "id": "g"}, "teamId": "t"},
                },
            ],
        },
        env={},
        checks=default_checks(),
    )
    messages = {w.path: w.message for w in config.warnings}
    assert messages["$.bindings[1]"].startswith("unreachable: $.bindings[0]")
    assert "never matches" in messages["$.bindings[2].match.roles"]
    assert "empty peer id" in messages["$.bindings[3].match.peer.id"]
    assert messages["$.bindings[5]"].startswith("unreachable: $.bindings[4]")


def test_host_network_sandbox_is_refused() -> None:
    found = errors({"agents": {"defaults": {"sandbox": {"docker": {"network": "host"}}}}})
    assert found == [
        "$.agents.defaults.sandbox.docker.network: network 'host' is refused: it escapes the sandbox"
    ]


def test_identity_links_without_scope_warn() -> None:
    config = parse_config({"session": {"identityLinks": {"a": ["x:1"]}}}, env={}, checks=default_checks())
    assert any(w.path == "$.session.identityLinks" for w in config.warnings)


class TestPaths:
    def test_config_path_precedence(self, tmp_path: Path) -> None:
        env = {"HOME": str(tmp_path), "CLAWMESH_CONFIG_PATH": "~/from-env.json"}
        assert config_path("~/explicit.json", env) == tmp_path / "explicit.json"
        assert config_path(None, env) == tmp_path / "from-env.json"
        assert config_path(None, {"HOME": str(tmp_path)}) == tmp_path / ".clawmesh" / "clawmesh.json"
        assert config_path(None, {"HOME": str(tmp_path), "CLAWMESH_STATE_DIR": "/srv/cm"}) == Path(
            "/srv/cm/clawmesh.json"
        )

    def test_state_dir(self, tmp_path: Path) -> None:
        assert state_dir({"HOME": str(tmp_path)}) == tmp_path / ".clawmesh"
        assert state_dir({"HOME": str(tmp_path), "CLAWMESH_STATE_DIR": "~/s"}) == tmp_path / "s"

    def test_workspace_and_agent_dir_rules(self, tmp_path: Path) -> None:
        env = {"HOME": str(tmp_path), "CLAWMESH_STATE_DIR": str(tmp_path / "state")}
        config = parse_config(
            {
                "agents": {
                    "list": [
                        {"id": "home", "default": True},
                        {"id": "work"},
                        {"id": "lab", "workspace": "~/lab", "agentDir": "~/lab-agent"},
                    ]
                }
            },
            env=env,
            checks=default_checks(),
        )
        home, work, lab = config.agents
        assert home.workspace == tmp_path / ".clawmesh" / "workspace"
        assert work.workspace == tmp_path / "state" / "workspace-work"
        assert lab.workspace == tmp_path / "lab"
        assert home.agent_dir == tmp_path / "state" / "agents" / "home" / "agent"
        assert lab.agent_dir == tmp_path / "lab-agent"
        assert work.sessions_dir == tmp_path / "state" / "agents" / "work" / "sessions"

    def test_defaults_workspace_and_profile(self, tmp_path: Path) -> None:
        env = {"HOME": str(tmp_path), "CLAWMESH_PROFILE": "dev"}
        config = parse_config(
            {"agents": {"list": [{"id": "a", "default": True}, {"id": "b"}]}},
            env=env,
            checks=default_checks(),
        )
        assert config.agents[0].workspace == tmp_path / ".clawmesh" / "workspace-dev"
        config = parse_config(
            {
                "agents": {
                    "defaults": {"workspace": "~/ws"},
                    "list": [{"id": "a", "default": True}, {"id": "b"}],
                }
            },
            env=env,
            checks=default_checks(),
        )
        assert config.agents[0].workspace == tmp_path / "ws"
        assert config.agents[1].workspace == tmp_path / "ws" / "b"


class TestModels:
    def test_model_chain_semantics(self) -> None:
        config = parse_config(
            {
                "agents": {
                    "defaults": {"model": {"primary": "anthropic/claude", "fallbacks": ["openai/gpt"]}},
                    "list": [
                        {"id": "inherit", "default": True},
                        {"id": "strict", "model": "openai/gpt-x"},
                        {"id": "primary-only", "model": {"primary": "openai/gpt-y"}},
                        {"id": "opt-in", "model": {"primary": "openai/gpt-y", "fallbacks": ["echo/z"]}},
                        {"id": "disabled", "model": {"fallbacks": []}},
                    ],
                }
            },
            env={},
            checks=default_checks(),
        )
        chains = {a.id: a.models for a in config.agents}
        assert chains == {
            "inherit": ("anthropic/claude", "openai/gpt"),
            "strict": ("openai/gpt-x",),
            "primary-only": ("openai/gpt-y",),
            "opt-in": ("openai/gpt-y", "echo/z"),
            "disabled": ("anthropic/claude",),
        }

    def test_no_model_means_openclaws_default_model_with_a_warning(self) -> None:
        # OpenClaw 2026.9.6 with no model configured: `openclaw models status` says
        # defaultModel "openai/gpt-6-astra", no fallbacks; the offline echo model is opt-in
        config = parse_config({}, env={}, checks=default_checks())
        assert config.agents[0].models == ("openai/gpt-6-astra",)
        assert any("OpenClaw's default openai/gpt-6-astra" in w.message for w in config.warnings)


def test_env_overrides() -> None:
    config = parse_config(
        {"gateway": {"port": 1}},
        env={"CLAWMESH_GATEWAY_PORT": "2000", "CLAWMESH_NATS_URL": "nats://x:1"},
        checks=default_checks(),
    )
    assert config.document.gateway.port == 2000  # type: ignore[union-attr]
    assert config.document.nats.url == "nats://x:1"  # type: ignore[union-attr]
    assert errors({}, env={"CLAWMESH_GATEWAY_PORT": "eighty"}) == [
        "$CLAWMESH_GATEWAY_PORT: expected int, got 'eighty'"
    ]


def test_version_changes_with_content_only() -> None:
    a = parse_config({"bindings": []}, env={}, checks=default_checks())
    b = parse_config({"bindings": []}, env={}, checks=default_checks())
    c = parse_config(
        {"bindings": [{"agentId": "x", "match": {"channel": "d"}}]}, env={}, checks=default_checks()
    )
    assert a.version == b.version != c.version


def test_openclaw_json_loads_as_is(tmp_path: Path) -> None:
    """A representative openclaw.json (multi-agent doc example shape) loads unchanged."""
    sample = {
        "meta": {"lastTouchedVersion": "2026.9.6"},
        "auth": {"profiles": {"anthropic:default": {"provider": "anthropic", "mode": "api_key"}}},
        "agents": {
            "defaults": {
                "workspace": "~/.openclaw/workspace",
                "model": {"primary": "anthropic/claude-opus-4-6"},
                "maxConcurrent": 4,
                "heartbeat": {"every": "30m"},
            },
            "list": [
                {
                    "id": "home",
                    "default": True,
                    "name": "Home",
                    "workspace": "~/.openclaw/workspace-home",
                    "identity": {"name": "Clawd", "emoji": "🦞"},
                },
                {
                    "id": "work",
                    "name": "Work",
                    "workspace": "~/.openclaw/workspace-work",
                    "model": "anthropic/claude-sonnet-4-6",
                    "sandbox": {"mode": "all", "scope": "agent"},
                    "tools": {"allow": ["read", "exec"], "deny": ["browser"]},
                    "groupChat": {"mentionPatterns": ["@work", "\\bwork\\b"]},
                },
            ],
        },
        "bindings": [
            {"agentId": "home", "match": {"channel": "whatsapp", "accountId": "personal"}},
            {"agentId": "work", "match": {"channel": "whatsapp", "accountId": "biz"}},
            {"agentId": "work", "match": {"channel": "discord", "guildId": "123", "roles": ["456"]}},
        ],
        "session": {"dmScope": "per-channel-peer", "reset": {"mode": "daily", "atHour": 4}},
        "channels": {
            "defaults": {"groupPolicy": "allowlist"},
            "whatsapp": {
                "dmPolicy": "pairing",
                "allowFrom": ["+15555550123"],
                "accounts": {"personal": {}, "biz": {}},
            },
            "discord": {"token": "${DISCORD_BOT_TOKEN}", "guilds": {"123": {"requireMention": True}}},
        },
        "tools": {"profile": "coding", "elevated": {"enabled": False}},
        "gateway": {
            "port": 18789,
            "bind": "loopback",
            "auth": {"mode": "token", "token": "abc"},
            "controlUi": {"enabled": True},
        },
        "logging": {"level": "info"},
    }
    path = tmp_path / "openclaw.json"
    path.write_text(json.dumps(sample))
    config = load_config(path, env={"HOME": str(tmp_path), "DISCORD_BOT_TOKEN": "t"}, checks=default_checks())
    assert config.agent_ids == ("home", "work")
    assert config.source == path
    assert {w.path for w in config.warnings} >= {
        "$.meta",
        "$.auth",
        "$.logging",
        "$.gateway.controlUi",
    }
    # Discord's adapter enforces its guild allow-list: no "not enforced" warning
    assert "$.channels.discord.guilds" not in {w.path for w in config.warnings}


def test_a_boolean_or_literal_key_names_both_in_its_error() -> None:
    assert errors({"channels": {"telegram": {"execApprovals": {"enabled": "sometimes"}}}}) == [
        "$.channels.telegram.execApprovals.enabled: expected a boolean or one of auto, got 'sometimes'"
    ]


def test_channel_credentials_ingress_would_refuse_are_reported_at_load() -> None:
    """What ingress checks when it starts an account (it then leaves the account off and runs):
    `clawmesh config validate` says it too, as a warning naming the key."""
    config = parse_config(
        {
            "channels": {
                "slack": {"botToken": "xoxb-1"},  # Socket Mode (the default) without appToken
                "discord": {"token": "t", "publicKey": "not-hex"},
                "telegram": {"botToken": "1:x"},  # fine
            }
        },
        env={},
        checks=default_checks(),
    )
    found = {w.path: w.message for w in config.warnings if "will not start" in w.message}
    assert set(found) == {"$.channels.slack.appToken", "$.channels.discord.publicKey"}
    assert "(account 'default' will not start)" in found["$.channels.slack.appToken"]


def test_history_limit_below_zero_is_refused_as_openclaw_refuses_it() -> None:
    assert errors({"channels": {"telegram": {"historyLimit": -3}}}) == [
        "$.channels.telegram.historyLimit: must be 0 or more (0 keeps none), got -3"
    ]
    assert errors({"messages": {"groupChat": {"historyLimit": -1}}}) == [
        "$.messages.groupChat.historyLimit: must be 0 or more (0 keeps none), got -1"
    ]


def test_a_byte_bound_of_zero_names_its_default_as_written() -> None:
    assert errors({"nats": {"mediaMaxBytes": 0}}) == [
        "$.nats.mediaMaxBytes: must be greater than 0, got 0 (leave it out for the default, 268435456)"
    ]
