"""The seed's per-agent runner keys: accepted as written, checked with paths, secrets kept out
of `config show`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.cli._config_cmd import redact
from clawmesh.config import (
    A2ASettings,
    ClaudeCodeSettings,
    ConfigError,
    CozeSettings,
    OpenClawXSettings,
    OpenCodeSettings,
    SecretRef,
    backend_where,
    parse_config,
    secret_value,
)

SEED: dict[str, Any] = {
    "agents": {
        "list": [
            {
                "id": "c",
                "default": True,
                "runnerType": "coze",
                "coze": {
                    "region": "cn",
                    "cn": {"botId": "7348", "apiKey": "pat_cn"},
                    "com": {"botId": "9", "apiKey": "pat_com"},
                },
            },
            {"id": "x", "runnerType": "openclawx", "openclawx": {"baseUrl": "http://10.0.0.2:18789/v1"}},
            {
                "id": "o",
                "runnerType": "opencode",
                "opencode": {
                    "mode": "local",
                    "port": 4096,
                    "password": "s3cret",
                    "workingDirectory": "~/proj",
                    "model": "anthropic/claude-sonnet-4",
                },
            },
            {"id": "k", "runnerType": "claude_code", "claudeCode": {"workingDirectory": "/srv/code"}},
            {"id": "k2", "runnerType": "claude_code"},
            {
                "id": "r",
                "runnerType": "a2a",
                "a2a": {"url": "https://far.example/a2a/main/", "token": "${FAR_TOKEN}"},
            },
        ]
    }
}


def _load(config: dict[str, Any]) -> Any:
    return parse_config(config, env={"HOME": "/home/u"}, checks=default_checks())


def test_the_seed_config_loads_as_written() -> None:
    config = _load(SEED)
    views = {a.id: a for a in config.agents}
    coze = views["c"].backend
    assert isinstance(coze, CozeSettings)
    assert (coze.region, coze.base_url, coze.bot_id, coze.api_key) == (
        "cn",
        "https://api.coze.cn",
        "7348",
        "pat_cn",
    )
    x = views["x"].backend
    assert isinstance(x, OpenClawXSettings) and x.base_url == "http://10.0.0.2:18789" and x.api_key is None
    o = views["o"].backend
    assert isinstance(o, OpenCodeSettings)
    assert (o.mode, o.base_url, o.working_directory, o.model) == (
        "local",
        "http://127.0.0.1:4096",
        Path("/home/u/proj"),
        "anthropic/claude-sonnet-4",
    )
    k, k2 = views["k"].backend, views["k2"].backend
    assert isinstance(k, ClaudeCodeSettings) and k.working_directory == Path("/srv/code")
    assert isinstance(k2, ClaudeCodeSettings) and k2.working_directory == views["k2"].workspace
    r = views["r"].backend
    assert isinstance(r, A2ASettings)
    assert (r.url, r.token, r.token_path) == (
        "https://far.example/a2a/main",
        "${FAR_TOKEN}",
        "$.agents.list[5].a2a.token",
    )
    assert views["c"].backend and "api.coze.cn" in backend_where(views["c"].backend)
    # proxy agents need no model: no "using the offline echo provider" warning for them
    assert not [w for w in config.warnings if "echo provider" in w.message]
    # clawmesh's own keys: no "OpenClaw's, not implemented" warning for the a2a block (only
    # the unset variable of its token is worth one)
    a2a_warnings = [w for w in config.warnings if ".a2a" in w.path]
    assert [(w.path, "FAR_TOKEN is not set" in w.message) for w in a2a_warnings] == [
        ("$.agents.list[5].a2a.token", True)
    ]


@pytest.mark.parametrize(
    ("agent", "path", "words"),
    [
        ({"runnerType": "coze"}, "$.agents.list[0].coze", "needs a coze block"),
        (
            {"runnerType": "coze", "coze": {"region": "com", "cn": {"botId": "1", "apiKey": "k"}}},
            "$.agents.list[0].coze.com",
            "no coze.com block",
        ),
        (
            {"runnerType": "coze", "coze": {"region": "cn", "cn": {"apiKey": "k"}}},
            "$.agents.list[0].coze.cn.botId",
            "missing",
        ),
        (
            {"runnerType": "coze", "coze": {"region": "cn", "cn": {"botId": "1"}}},
            "$.agents.list[0].coze.cn.apiKey",
            "missing",
        ),
        (
            {"runnerType": "openclawx", "openclawx": {"baseUrl": "ftp://x"}},
            "$.agents.list[0].openclawx.baseUrl",
            "http(s) URL",
        ),
        ({"runnerType": "a2a"}, "$.agents.list[0].a2a", "needs an a2a block: {url, token?}"),
        ({"runnerType": "a2a", "a2a": {"token": "t"}}, "$.agents.list[0].a2a.url", "missing required key"),
        ({"runnerType": "a2a", "a2a": {"url": "ws://far/a2a"}}, "$.agents.list[0].a2a.url", "http(s) URL"),
        (
            {"runnerType": "a2a", "a2a": {"url": "https://far/card.json#x"}},
            "$.agents.list[0].a2a.url",
            "#fragment",
        ),
        (
            {"runnerType": "a2a", "a2a": {"url": "https://far", "token": " "}},
            "$.agents.list[0].a2a.token",
            "empty",
        ),
        (
            {"runnerType": "opencode", "opencode": {"mode": "remote"}},
            "$.agents.list[0].opencode.address",
            "mode 'remote'",
        ),
        (
            {"runnerType": "opencode", "opencode": {"port": 70000}},
            "$.agents.list[0].opencode.port",
            "not a TCP port",
        ),
        (
            {"runnerType": "opencode", "opencode": {"model": "sonnet"}},
            "$.agents.list[0].opencode.model",
            "provider/model",
        ),
    ],
)
def test_bad_runner_settings_are_refused_with_their_path(
    agent: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load({"agents": {"list": [{"id": "a", **agent}]}})
    assert [(p.path, words in p.message) for p in caught.value.problems] == [(path, True)]


def test_unknown_keys_in_a_runner_block_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        _load({"agents": {"list": [{"id": "a", "runnerType": "coze", "coze": {"regoin": "cn"}}]}})
    assert "regoin" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        _load(
            {
                "agents": {
                    "list": [
                        {"id": "a", "runnerType": "a2a", "a2a": {"url": "http://f", "outboundToken": "t"}}
                    ]
                }
            }
        )
    assert "outboundToken" in str(caught.value)


def test_secrets_come_from_env_or_files_and_are_redacted(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("pat_from_file\n")
    assert secret_value(SecretRef(source="file", id=str(secret)), {}, "$.k") == "pat_from_file"
    assert secret_value(SecretRef(source="env", id="K"), {"K": "pat_env"}, "$.k") == "pat_env"
    with pytest.raises(ConfigError) as caught:
        secret_value(
            SecretRef(source="file", id=str(tmp_path / "none")), {}, "$.agents.list[0].coze.cn.apiKey"
        )
    assert caught.value.problems[0].path == "$.agents.list[0].coze.cn.apiKey"
    shown = redact(_load(SEED).raw)
    agents = shown["agents"]["list"]
    assert agents[0]["coze"]["cn"]["apiKey"] == "***" and agents[2]["opencode"]["password"] == "***"
    assert agents[0]["coze"]["cn"]["botId"] == "7348"
    assert agents[5]["a2a"] == {"url": "https://far.example/a2a/main/", "token": "***"}


def test_agents_list_and_sandbox_explain_say_where_the_agent_runs(tmp_path: Path) -> None:
    path = tmp_path / "clawmesh.json"
    path.write_text(json.dumps(SEED))
    env = {**os.environ, "HOME": str(tmp_path), "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("CLAWMESH_STATE_DIR", None)
    cli = [sys.executable, "-m", "clawmesh_gateway", "--config", str(path)]
    listed = subprocess.run(
        [*cli, "agents", "list", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    where = {a["id"]: (a["runnerType"], a["runsAt"]) for a in json.loads(listed.stdout)}
    assert where["c"] == ("coze", "Coze bot 7348 at https://api.coze.cn (chat v3)")
    assert where["x"][1].startswith("remote gateway http://10.0.0.2:18789")
    assert where["o"][1].startswith("OpenCode server http://127.0.0.1:4096 (started by the runner)")
    assert where["k"][1] == "Claude Code CLI (claude) in /srv/code, on the runner's host"
    assert where["r"] == ("a2a", "remote A2A agent https://far.example/a2a/main (JSON-RPC)")
    explained = subprocess.run(
        [*cli, "sandbox", "explain", "--agent", "k", "--offline"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert explained.returncode == 0, explained.stderr
    assert "agent k runs at: Claude Code CLI (claude) in /srv/code" in explained.stdout
