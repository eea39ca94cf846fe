"""OpenClaw's keys (from its schema's generated catalogue), `$include`, `env.vars` and SecretRefs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import Config, ConfigError, SecretRef, load_config, parse_config, secret_value
from clawmesh.config._catalogue import catalogue_child, catalogue_names, catalogue_root


def load(data: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    return parse_config(data, env=env or {}, checks=default_checks())


def errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(data)
    return [str(p) for p in err.value.problems]


def warnings(config: Config, under: str) -> list[str]:
    return [str(w) for w in config.warnings if w.path.startswith(under)]


def test_the_catalogue_is_openclaws_schema() -> None:
    root = catalogue_root()
    tools = catalogue_child(root, "tools")
    exec_keys = catalogue_child(tools, "exec") if tools is not None else None
    assert exec_keys is not None and "timeoutSeconds" in catalogue_names(exec_keys)
    assert catalogue_child(root, "nosuchsection") is None


def test_a_key_openclaw_knows_loads_with_one_warning() -> None:
    config = load({"hooks": {"gmail": {"account": "a@x"}}, "messages": {"visibleReplies": "all"}})
    assert warnings(config, "$.hooks") == ["$.hooks.gmail: accepted, not implemented by clawmesh; ignored"]
    assert warnings(config, "$.messages") == [
        "$.messages.visibleReplies: accepted, not implemented by clawmesh; ignored"
    ]


def test_implemented_hooks_and_gateway_tools_keys_do_not_warn() -> None:
    config = load(
        {
            "gateway": {"tools": {"allow": ["read"], "deny": ["browser"]}},
            "hooks": {
                "enabled": True,
                "token": "a-long-hook-token",
                "path": "/hooks",
                "allowedAgentIds": ["*"],
                "defaultSessionKey": "hook:default",
                "allowRequestSessionKey": True,
                "allowedSessionKeyPrefixes": ["hook:"],
                "presets": ["gmail"],
                "mappings": [
                    {
                        "id": "gh",
                        "match": {"path": "github", "source": "gh"},
                        "action": "agent",
                        "wakeMode": "now",
                        "name": "GitHub",
                        "agentId": "main",
                        "sessionKey": "hook:gh",
                        "sessionMode": "persistent",
                        "messageTemplate": "{{x}}",
                        "textTemplate": "{{y}}",
                        "forEach": "items",
                        "deliver": False,
                        "channel": "last",
                        "to": "1",
                        "model": "openai/gpt-5.4",
                        "thinking": "low",
                        "timeoutSeconds": 30,
                        "allowUnsafeExternalContent": False,
                    }
                ],
            },
        }
    )
    assert warnings(config, "$.hooks") == []
    assert warnings(config, "$.gateway") == []


def test_agents_entries_keys_openclaw_writes_load() -> None:
    config = load(
        {
            "agents": {
                "ownership": "explicit",
                "defaults": {"authInheritance": {"agentId": "work"}},
                "entries": {"work": {"workspace": "/tmp/w", "name": "Work"}},
            }
        }
    )
    assert config.agent_ids == ("work",)
    assert warnings(config, "$.agents.defaults.authInheritance") == [
        "$.agents.defaults.authInheritance: accepted, not implemented by clawmesh; ignored"
    ]


def test_an_unknown_key_suggests_openclaws_current_name() -> None:
    assert errors({"tools": {"exec": {"timeoutSecs": 5}}}) == [
        "$.tools.exec.timeoutSecs: unknown key 'timeoutSecs' at $.tools.exec — did you mean 'timeoutSeconds'?"
    ]
    assert errors({"gateway": {"tlss": {}}}) == [
        "$.gateway.tlss: unknown key 'tlss' at $.gateway — did you mean 'tls'?"
    ]


def test_policy_keys_warn_that_they_are_not_enforced() -> None:
    policies = {"dmPolicy": "allowlist", "allowFrom": ["1"], "groups": {"*": {"requireMention": True}}}
    # Signal has no adapter: its policies filter nobody
    config = load({"channels": {"signal": policies}})
    assert warnings(config, "$.channels") == [
        "$.channels.signal.dmPolicy: accepted, not enforced by clawmesh (no sender is filtered by it)",
        "$.channels.signal.allowFrom: accepted, not enforced by clawmesh (no sender is filtered by it)",
        "$.channels.signal.groups['*'].requireMention: accepted, not enforced by clawmesh (no sender is filtered by it)",
    ]
    # Telegram's, Slack's, WhatsApp's and Discord's adapters enforce them
    assert warnings(load({"channels": {"telegram": policies}}), "$.channels") == []
    assert warnings(load({"channels": {"slack": policies}}), "$.channels") == []
    assert warnings(load({"channels": {"whatsapp": policies}}), "$.channels") == []
    discord = {
        **policies,
        "groupPolicy": "allowlist",
        "guilds": {"1": {"channels": {"2": {"roles": ["3"]}}}},
        "maxLinesPerMessage": 10,
        "suppressEmbeds": False,
    }
    assert warnings(load({"channels": {"discord": discord}}), "$.channels") == []


def test_env_vars_in_the_file_are_defined_unless_the_environment_has_them() -> None:
    data = {
        "env": {"vars": {"MY_BASE": "http://127.0.0.1:9", "MY_KEY": "from-file"}},
        "models": {"providers": {"local": {"baseUrl": "${MY_BASE}/v1", "apiKey": "${MY_KEY}"}}},
    }
    config = load(data, env={"MY_KEY": "from-env"})
    provider = config.document.models.providers["local"]  # type: ignore[union-attr]
    assert (provider.base_url, provider.api_key) == ("http://127.0.0.1:9/v1", "from-env")
    assert config.env["MY_BASE"] == "http://127.0.0.1:9"


def test_a_secret_ref_is_read_from_the_environment_where_needed() -> None:
    config = load(
        {
            "models": {
                "providers": {
                    "x": {
                        "baseUrl": "http://h",
                        "apiKey": {"source": "env", "provider": "default", "id": "X_KEY"},
                    }
                }
            }
        }
    )
    ref = config.document.models.providers["x"].api_key  # type: ignore[union-attr]
    assert isinstance(ref, SecretRef)
    assert secret_value(ref, {"X_KEY": "k"}, "$.p") == "k"
    with pytest.raises(ConfigError, match=r"\$.p: environment variable X_KEY is not set"):
        secret_value(ref, {}, "$.p")


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_include_replaces_merges_in_order_and_siblings_win(tmp_path: Path) -> None:
    write(tmp_path / "agents.json5", "{ entries: { a: { workspace: '/tmp/a' } } } // JSON5")
    write(tmp_path / "b1.json", {"entries": {"b": {"name": "one"}}, "ownership": "explicit"})
    write(tmp_path / "b2.json", {"entries": {"b": {"name": "two", "workspace": "/tmp/b"}}})
    cfg = write(
        tmp_path / "openclaw.json",
        {"agents": {"$include": ["./b1.json", "./b2.json"], "entries": {"c": {"$include": "c.json"}}}},
    )
    write(tmp_path / "c.json", {"workspace": "/tmp/c"})
    config = load_config(cfg, env={"HOME": str(tmp_path)}, checks=default_checks())
    assert config.agent_ids == ("b", "c")
    assert config.raw["agents"]["entries"]["b"] == {"name": "two", "workspace": "/tmp/b"}
    single = write(tmp_path / "single.json", {"agents": {"$include": "agents.json5"}})
    assert load_config(single, env={"HOME": str(tmp_path)}, checks=default_checks()).agent_ids == ("a",)


@pytest.mark.parametrize(
    ("include", "message"),
    [
        ("missing.json", "included file missing.json not found"),
        ("../outside.json", "../outside.json is outside the config directory"),
        ("loop.json", "circular $include"),
    ],
)
def test_include_errors_name_the_file(tmp_path: Path, include: str, message: str) -> None:
    root = tmp_path / "cfg"
    write(tmp_path / "outside.json", {})
    write(root / "loop.json", {"$include": "loop.json"})
    cfg = write(root / "openclaw.json", {"agents": {"$include": include}})
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env={"HOME": str(tmp_path)}, checks=default_checks())
    assert err.value.problems[0].path.startswith("$.agents")
    assert message in err.value.problems[0].message


def test_the_file_openclaw_agents_add_and_bind_write_loads() -> None:
    """tests/fixtures/openclaw_agents_add_bind.json is what OpenClaw 2026.9.6 wrote for
    `openclaw agents add work --workspace ~/ws-work --non-interactive` then
    `openclaw agents bind --agent work --bind telegram:ops` in a fresh HOME (/home/me):
    `agents.entries` (map form), `ownership: "explicit"`, `systemAgent`, `meta`, `plugins`."""
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "openclaw_agents_add_bind.json"
    config = load_config(fixture, env={"HOME": "/home/me"}, checks=default_checks())
    assert config.agent_ids == ("main", "work")
    assert config.default_agent_id == "main"
    work = next(a for a in config.agents if a.id == "work")
    assert str(work.workspace) == "/home/me/ws-work"
    assert [b.agent_id for b in config.document.bindings or ()] == ["work"]
    assert not [w for w in config.warnings if "unknown" in w.message]
