"""The opencode and claude_code runners against the REAL programs (OpenCode 1.18 `opencode
serve`, started by the runner in mode local; Claude Code 2.1 `claude -p`), both pointed at the
local fake model server, offline: through the whole gateway, two turns each in one session
(the second continues the program's own session), deltas streamed as events, cost recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fakes.models import FakeModelServer, HTTPError, Text
from tests.fixtures.gateway import Gateway, run_gateway
from tests.fixtures.ports import free_ports
from tests.fixtures.sse import sse_events
from tests.peers import claude_binary, opencode_binary


def _opencode_config(fake_url: str) -> str:
    return json.dumps(
        {
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": False,
            "share": "disabled",
            "enabled_providers": ["fake"],
            "model": "fake/fake-model",
            "small_model": "fake/fake-model",
            "provider": {
                "fake": {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": "Fake (local)",
                    "options": {"baseURL": f"{fake_url}/v1", "apiKey": "dummy"},
                    "models": {
                        "fake-model": {"name": "Fake Model", "limit": {"context": 32000, "output": 1024}}
                    },
                }
            },
        }
    )


def _env(tmp_path: Path, fake_url: str) -> dict[str, str]:
    home = tmp_path / "home"
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        # OpenCode offline (docs/runners.md)
        "OPENCODE_CONFIG_CONTENT": _opencode_config(fake_url),
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_PURE": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "OPENCODE_DISABLE_EMBEDDED_WEB_UI": "1",
        "OPENCODE_DISABLE_EXTERNAL_SKILLS": "1",
        "OPENCODE_DISABLE_CLAUDE_CODE": "1",
        "npm_config_registry": "http://127.0.0.1:9/",
        # Claude Code offline
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "ANTHROPIC_BASE_URL": fake_url,
        "ANTHROPIC_API_KEY": "dummy",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }


async def _ask(gw: Gateway, agent: str, text: str) -> list[tuple[str, dict[str, Any]]]:
    async with gw.client(timeout=180) as http:
        r = await http.post(
            "/v1/messages",
            json={"text": text, "agentId": agent, "peer": {"kind": "direct", "id": "u1"}},
            headers={"Accept": "text/event-stream"},
        )
    assert r.status_code == 200, r.text
    return sse_events(r.text)


async def test_real_opencode_server_started_by_the_runner(nats_url: str, tmp_path: Path) -> None:
    binary = opencode_binary()
    async with FakeModelServer(validate=False) as fake:
        fake.script(Text("pong from fake model", chunks=4), Text("second answer", chunks=2))
        config = {
            "agents": {
                "list": [
                    {
                        "id": "oc",
                        "default": True,
                        "runnerType": "opencode",
                        "opencode": {
                            "mode": "local",
                            "port": free_ports(1)[0],
                            "password": "s3cret",
                            "workingDirectory": str(tmp_path / "project"),
                            "model": "fake/fake-model",
                            "command": str(binary),
                        },
                        "model": {"primary": "echo/unused", "fallbacks": ["echo/fallback"]},
                    }
                ]
            }
        }
        async with run_gateway(nats_url, config, tmp_path, env=_env(tmp_path, fake.base_url)) as gw:
            first = await _ask(gw, "oc", "say hello")
            second = await _ask(gw, "oc", "and again")
            helped = await _ask(gw, "oc", "/help")
            undone = await _ask(gw, "oc", "/undo")
            redone = await _ask(gw, "oc", "/redo")
            initialised = await _ask(gw, "oc", "/init")
            # the model behind OpenCode is overloaded: OpenCode retries forever, the runner
            # aborts after its second retry and the agent's fallback answers
            fake.script(HTTPError(529), HTTPError(529), HTTPError(529), HTTPError(529))
            overloaded = await _ask(gw, "oc", "still there?")
        chat = [r for r in fake.requests if r.path.endswith("/chat/completions")]
    assert first[-1][0] == "final", first[-1]
    assert first[-1][1]["text"] == "pong from fake model"
    assert "".join(d["text"] for e, d in first if e == "delta") == "pong from fake model"
    assert second[-1][1]["text"] == "second answer"
    # the second prompt went to the same OpenCode session: the model saw the first exchange
    users = [m for m in chat[1].messages if m["role"] == "user"]
    assert [u["content"] if isinstance(u["content"], str) else u["content"][0]["text"] for u in users][
        -2:
    ] == [
        "say hello",
        "and again",
    ]
    assert "/init" in helped[-1][1]["text"]
    # slash commands on the real server: undo reverts the last prompt (its text echoed), redo
    # restores it, init runs OpenCode's built-in command through the model
    assert undone[-1][1]["text"] == "Undone: and again", undone[-1]
    assert redone[-1][1]["text"] == "Redone.", redone[-1]
    assert initialised[-1][0] == "final" and initialised[-1][1]["text"] == "pong from fake"
    failover = next(d for e, d in overloaded if e == "failover")
    assert (failover["fromModel"], failover["toModel"], failover["reason"]) == (
        "opencode",
        "echo/fallback",
        "overloaded",
    )
    assert overloaded[-1][1]["text"] == "echo: still there?"


async def test_real_claude_code_cli(nats_url: str, tmp_path: Path) -> None:
    binary = claude_binary()
    async with FakeModelServer(validate=False) as fake:
        fake.script(Text("pong from fake claude", chunks=3), Text("resumed answer", chunks=2), HTTPError(529))
        config = {
            "agents": {
                "list": [
                    {
                        "id": "cc",
                        "default": True,
                        "runnerType": "claude_code",
                        "claudeCode": {"workingDirectory": str(tmp_path / "code"), "command": str(binary)},
                        "model": {"primary": "echo/unused", "fallbacks": ["echo/fallback"]},
                    }
                ]
            }
        }
        async with run_gateway(nats_url, config, tmp_path, env=_env(tmp_path, fake.base_url)) as gw:
            first = await _ask(gw, "cc", "hello")
            second = await _ask(gw, "cc", "again")
            overloaded = await _ask(gw, "cc", "are you there?")
        messages = [
            r for r in fake.requests if r.path.startswith("/v1/messages") and "count_tokens" not in r.path
        ]
    assert first[-1][0] == "final", first[-1]
    assert first[-1][1]["text"] == "pong from fake claude"
    assert "".join(d["text"] for e, d in first if e == "delta") == "pong from fake claude"
    assert second[-1][1]["text"] == "resumed answer"
    # --resume replayed the first exchange to the model
    assert len(messages[1].messages) > len(messages[0].messages)
    # the model behind Claude Code is overloaded (529): the agent's fallback answers, visibly
    failover = next(d for e, d in overloaded if e == "failover")
    assert (failover["fromModel"], failover["toModel"], failover["reason"]) == (
        "claude_code",
        "echo/fallback",
        "overloaded",
    )
    assert overloaded[-1][1]["text"] == "echo: are you there?"
