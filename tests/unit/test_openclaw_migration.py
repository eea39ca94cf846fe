"""OpenClaw's environment variables, its workspace rules, and its transcript format both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import config_path, default_workspace, load_config, parse_config, state_dir
from clawmesh.migrate import (
    active_branch,
    openclaw_config_path,
    openclaw_index_entry,
    openclaw_jsonl,
    openclaw_state_dir,
    plan_files,
    to_turns,
)
from clawmesh.sessions import TxAssistant, TxError, TxTool, TxUser

HOME = {"HOME": "/home/u"}


@pytest.mark.parametrize(
    ("env", "state", "config", "workspace"),
    [
        ({}, "/home/u/.clawmesh", "/home/u/.clawmesh/clawmesh.json", "/home/u/.clawmesh/workspace"),
        (
            {"OPENCLAW_STATE_DIR": "/oc"},
            "/oc",
            "/oc/openclaw.json",  # OpenClaw's dir keeps OpenClaw's layout
            "/oc/workspace",
        ),
        (
            {"OPENCLAW_CONFIG_PATH": "~/oc.json"},
            "/home/u/.clawmesh",
            "/home/u/oc.json",
            "/home/u/.clawmesh/workspace",
        ),
        (
            {"OPENCLAW_STATE_DIR": "/oc", "OPENCLAW_CONFIG_PATH": "/etc/oc.json"},
            "/oc",
            "/etc/oc.json",
            "/oc/workspace",
        ),
        # clawmesh's own variables win, and then OpenClaw's are not consulted at all
        (
            {"CLAWMESH_STATE_DIR": "/cm", "OPENCLAW_STATE_DIR": "/oc", "OPENCLAW_CONFIG_PATH": "/oc/x.json"},
            "/cm",
            "/cm/clawmesh.json",
            "/home/u/.clawmesh/workspace",
        ),
        (
            {"CLAWMESH_CONFIG_PATH": "/cm.json", "OPENCLAW_CONFIG_PATH": "/oc.json"},
            "/home/u/.clawmesh",
            "/cm.json",
            "/home/u/.clawmesh/workspace",
        ),
    ],
)
def test_openclaw_variables_apply_when_clawmesh_ones_are_unset(
    env: dict[str, str], state: str, config: str, workspace: str
) -> None:
    env = {**HOME, **env}
    assert state_dir(env) == Path(state)
    assert config_path(None, env) == Path(config)
    assert default_workspace(env) == Path(workspace)
    assert config_path("/explicit.json", env) == Path("/explicit.json")


def test_a_config_named_by_openclaw_config_path_must_exist(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "OPENCLAW_CONFIG_PATH": str(tmp_path / "missing.json")}
    with pytest.raises(Exception, match="config file not found"):
        load_config(checks=default_checks(), env=env, missing_ok=True)
    (tmp_path / "missing.json").write_text('{"agents": {"list": [{"id": "ops"}]}}')
    assert load_config(checks=default_checks(), env=env, missing_ok=True).agent_ids == ("ops",)


def test_openclaw_source_dir_and_config() -> None:
    assert openclaw_state_dir(None, HOME) == Path("/home/u/.openclaw")
    assert openclaw_state_dir(None, {**HOME, "OPENCLAW_PROFILE": "work"}) == Path("/home/u/.openclaw-work")
    assert openclaw_state_dir(None, {**HOME, "OPENCLAW_STATE_DIR": "/oc"}) == Path("/oc")
    assert openclaw_state_dir("~/elsewhere", {**HOME, "OPENCLAW_STATE_DIR": "/oc"}) == Path(
        "/home/u/elsewhere"
    )
    assert openclaw_config_path(Path("/oc"), HOME) == Path("/oc/openclaw.json")
    assert openclaw_config_path(Path("/oc"), {**HOME, "OPENCLAW_CONFIG_PATH": "/x.json"}) == Path("/x.json")


def test_default_workspaces_are_resolved_by_each_side_rules(tmp_path: Path) -> None:
    """No `workspace` in the config: OpenClaw's default agent uses `<state>/workspace`, the
    others `<state>/workspace-<id>`; they are copied to where clawmesh looks for them."""
    source = tmp_path / "oc"
    for name in ("workspace", "workspace-ops"):
        (source / name / "memory").mkdir(parents=True)
        (source / name / "AGENTS.md").write_text(name)
        (source / name / "memory" / "notes.md").write_text("n")
    env = {"HOME": str(tmp_path), "CLAWMESH_STATE_DIR": str(tmp_path / "cm")}
    doc = {"agents": {"list": [{"id": "main", "default": True}, {"id": "ops"}]}}
    config = parse_config(doc, checks=(), env=env, source=None)
    plan = plan_files(source, source / "openclaw.json", tmp_path / "cm" / "clawmesh.json", config, env)
    moves = {
        (str(f.src.relative_to(tmp_path)), str(f.dst.relative_to(tmp_path)), f.state) for f in plan.files()
    }
    assert moves == {
        ("oc/workspace/AGENTS.md", ".clawmesh/workspace/AGENTS.md", "new"),
        ("oc/workspace/memory/notes.md", ".clawmesh/workspace/memory/notes.md", "new"),
        ("oc/workspace-ops/AGENTS.md", "cm/workspace-ops/AGENTS.md", "new"),
        ("oc/workspace-ops/memory/notes.md", "cm/workspace-ops/memory/notes.md", "new"),
    }
    env["OPENCLAW_WORKSPACE_DIR"] = str(tmp_path / "custom")
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "SOUL.md").write_text("s")
    plan = plan_files(source, source / "openclaw.json", tmp_path / "cm" / "clawmesh.json", config, env)
    assert {f.src.name for f in plan.agents[0].files} == {"SOUL.md"}


def _message(i: int, parent: str | None, **message: object) -> dict[str, object]:
    return {
        "type": "message",
        "id": f"e{i}",
        "parentId": parent,
        "message": {"timestamp": 1000 * i, **message},
    }


def test_openclaw_messages_become_turns_with_ids_derived_from_openclaw() -> None:
    events = [
        {"type": "session", "id": "sid"},
        _message(1, None, role="user", content="hi"),
        _message(
            2,
            "e1",
            role="assistant",
            content=[
                {"type": "text", "text": "let me look"},
                {"type": "toolCall", "id": "c1", "name": "ls", "arguments": {}},
            ],
            provider="openai",
            model="gpt-5",
            api="openai-responses",
            usage={"input": 5, "output": 2},
            stopReason="toolUse",
        ),
        _message(
            3,
            "e2",
            role="toolResult",
            toolCallId="c1",
            toolName="ls",
            content=[{"type": "text", "text": "a"}],
        ),
        {"type": "model_change", "id": "e4", "parentId": "e3"},
        _message(5, "e4", role="user", content=[{"type": "text", "text": "again"}, {"type": "image"}]),
        _message(6, "e5", role="assistant", content=[], stopReason="error", errorMessage="boom"),
    ]
    turns, other = to_turns("sid", events)
    assert other == 1
    assert [(t.turn_id, t.seq) for t in turns] == [("openclaw:sid:e1", 1), ("openclaw:sid:e5", 2)]
    user, reply, tool = turns[0].entries
    assert isinstance(user, TxUser) and user.text == "hi" and user.ts == 1.0
    assert isinstance(reply, TxAssistant)
    assert (reply.model, reply.api, reply.stop_reason, reply.input_tokens) == (
        "openai/gpt-5",
        "openai-responses",
        "tool_use",
        5,
    )
    assert reply.tool_calls == [{"id": "c1", "name": "ls", "arguments": {}}]
    assert isinstance(tool, TxTool) and tool.content == "a"
    assert [type(e) for e in turns[1].entries] == [TxUser, TxError]
    assert turns[1].entries[0].text == "again\n[image]"  # type: ignore[union-attr]


def test_the_active_branch_is_the_path_to_the_newest_entry() -> None:
    events = [
        _message(1, None, role="user", content="a"),
        _message(2, "e1", role="assistant", content="abandoned"),
        _message(3, "e1", role="assistant", content="retried"),
    ]
    assert [e["id"] for e in active_branch(events)] == ["e1", "e3"]


def test_export_writes_what_openclaw_reads() -> None:
    entries = [
        TxUser(turn_id="t1", seq=1, text="hi", ts=1.0),
        TxAssistant(
            turn_id="t1",
            seq=1,
            text="yo",
            model="anthropic/claude-x",
            api="anthropic",
            stop_reason="end_turn",
            input_tokens=10,
            output_tokens=3,
            ts=2.0,
        ),
        TxUser(turn_id="t2", seq=2, text="more", ts=3.0),
        TxError(turn_id="t2", seq=2, code="MODEL_ERROR", message="rate limited", ts=4.0),
    ]
    lines = openclaw_jsonl("sid-1", entries, "/ws")
    reply = lines[2]["message"]
    assert {k: reply[k] for k in ("api", "provider", "model", "stopReason")} == {
        "api": "anthropic-messages",
        "provider": "anthropic",
        "model": "claude-x",
        "stopReason": "stop",
    }
    assert reply["usage"]["input"] == 10 and reply["usage"]["totalTokens"] == 13
    failed = lines[4]["message"]
    assert (failed["role"], failed["stopReason"], failed["errorMessage"]) == (
        "assistant",
        "error",
        "rate limited",
    )
    assert failed["provider"] == "anthropic"
    index = openclaw_index_entry(
        "sid-1", entries, updated_at=5.0, session_file="sid-1.jsonl", channel="telegram"
    )
    assert {
        k: index[k] for k in ("modelProvider", "model", "inputTokens", "outputTokens", "totalTokens")
    } == {
        "modelProvider": "anthropic",
        "model": "claude-x",
        "inputTokens": 10,
        "outputTokens": 3,
        "totalTokens": 13,
    }
    # imported back, the same records come out (what a round trip through OpenClaw keeps)
    turns, _ = to_turns("sid-1", json.loads(json.dumps(lines)))
    back = [e for t in turns for e in t.entries]
    assert [type(e) for e in back] == [TxUser, TxAssistant, TxUser, TxError]
    assert back[1].input_tokens == 10 and back[1].model == "anthropic/claude-x"  # type: ignore[union-attr]
