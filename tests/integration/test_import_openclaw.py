"""`clawmesh import openclaw` against a state dir made by the real OpenClaw 2026.9.6
(tests/fixtures/oracle/openclaw_state.tar.gz, from scripts/oracle/openclaw_state.py): its
SQLite store and, before `openclaw doctor` converted them, its legacy JSONL files."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from typer.testing import CliRunner

from clawmesh.bus import Layout, provision
from clawmesh.cli import app as cli_app
from tests.fakes.models import FakeModelServer, Text
from tests.fixtures.gateway import run_gateway

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "oracle" / "openclaw_state.tar.gz"
# what the fixture script wrote: session key → (turns, transcript records)
EXPECTED = {
    "agent:main:main": (3, 8),
    "agent:main:telegram:direct:4242": (1, 2),
    "agent:work:main": (1, 2),
}


@pytest.fixture
def openclaw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Unpacked under HOME (the fixture's config names `~/…` paths), clawmesh's state beside it."""
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path / "oc", filter="data")
    home = tmp_path / "oc"
    state = tmp_path / "clawmesh"
    monkeypatch.setenv("HOME", str(home / "sqlite"))
    monkeypatch.setenv("CLAWMESH_STATE_DIR", str(state))
    return {"sqlite": home / "sqlite", "legacy": home / "legacy", "state": state}


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli_app, list(args))


async def _run(*args: str) -> Any:
    return await asyncio.to_thread(_cli, *args)


def _errors(res: Any) -> str:
    """stderr and the one-line error (`clawmesh` prints a CliError as `error: …`)."""
    return res.stderr + (f"error: {res.exception}" if res.exception else "")


async def _json(*args: str) -> Any:
    res = await _run(*args, "--json")
    assert res.exit_code == 0, (res.output, res.stderr)
    return json.loads(res.stdout)


async def _sessions(nats_url: str) -> dict[str, Any]:
    rows = await _json("sessions", "list", "--nats-url", nats_url)
    return {r["sessionKey"]: r for r in rows}


async def _stream_messages(nc: Client) -> int:
    info = await nc.jetstream().stream_info(Layout().subjects.stream("SESSIONS"))
    return int(info.state.messages)


async def test_import_from_the_sqlite_store_then_again(
    nats_url: str, nc: Client, openclaw: dict[str, Path]
) -> None:
    await provision(nc.jetstream(), Layout())
    source = openclaw["sqlite"] / ".openclaw"
    res = await _run("import", "openclaw", "--from", str(source), "--nats-url", nats_url)
    assert res.exit_code == 0, (res.output, res.stderr)

    config = openclaw["state"] / "clawmesh.json"
    assert config.read_bytes() == (source / "openclaw.json").read_bytes()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    # main's agentDir is the default one: copied into clawmesh's, secrets 0600; work's is
    # named in the config (`~/.openclaw/agents/work/agent`), so it is used where it is
    profiles = openclaw["state"] / "agents" / "main" / "agent" / "auth-profiles.json"
    assert profiles.read_bytes() == (source / "agents/main/agent/auth-profiles.json").read_bytes()
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o600
    assert (openclaw["state"] / "agents/main/agent/models.json").is_file()
    assert not (openclaw["state"] / "agents/main/agent/openclaw-agent.sqlite").exists()
    assert "sk-fixture" not in res.output + res.stderr  # secrets are never printed

    rows = await _sessions(nats_url)
    assert {k: r["turns"] for k, r in rows.items()} == {k: v[0] for k, v in EXPECTED.items()}
    assert rows["agent:main:main"]["sessionId"] == "0c1e5e6a-0000-4000-8000-000000000001"
    assert rows["agent:main:telegram:direct:4242"]["channel"] == "telegram"
    history = await _json("sessions", "history", "agent:main:main", "--nats-url", nats_url)
    assert [h["role"] for h in history] == [
        "user", "assistant", "user", "assistant", "tool", "assistant", "user", "error",
    ]  # fmt: skip
    assert history[1] == {**history[1], "text": "Hi! How can I help?", "model": "anthropic/claude-sonnet-4-5"}
    assert history[1]["inputTokens"] == 12 and history[1]["outputTokens"] == 7
    assert history[3]["toolCalls"] == [{"id": "call_1", "name": "read", "arguments": {"path": "notes.md"}}]
    assert history[4]["content"] == "buy milk"
    assert history[6]["text"].startswith("summarise this: lorem ipsum")  # a Zstd-compressed event
    assert history[7]["message"] == "429 rate limit exceeded"

    stored = await _stream_messages(nc)
    assert stored == sum(v[0] for v in EXPECTED.values())  # one stream message per turn
    again = await _run("import", "openclaw", "--from", str(source), "--nats-url", nats_url)
    assert again.exit_code == 0, (again.output, again.stderr)
    assert "nothing new to import" in again.stdout
    assert await _stream_messages(nc) == stored


async def test_the_next_turn_continues_an_imported_session(
    nats_url: str, nc: Client, openclaw: dict[str, Path], tmp_path: Path
) -> None:
    await provision(nc.jetstream(), Layout())
    source = openclaw["sqlite"] / ".openclaw"
    res = await _run("import", "openclaw", "--from", str(source), "--nats-url", nats_url)
    assert res.exit_code == 0, (res.output, res.stderr)
    async with FakeModelServer() as fake:
        fake.script(Text("welcome back"))
        config = {
            "agents": {"list": [{"id": "main", "default": True, "model": "openai/fake-model"}]},
            "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
        }
        (tmp_path / "gw").mkdir()
        async with run_gateway(nats_url, config, tmp_path / "gw") as gw, gw.client() as http:
            r = await http.post(
                "/v1/messages?wait=60", json={"text": "what did we talk about?", "agentId": "main"}
            )
            assert r.status_code == 200, r.text
            assert r.json()["sessionKey"] == "agent:main:main"
            assert r.json()["text"] == "welcome back"
        texts = json.dumps(fake.requests[-1].messages)
        assert "hello there" in texts and "Your notes say: buy milk." in texts
    rows = await _sessions(nats_url)
    assert rows["agent:main:main"]["turns"] == 4
    # the runner records what OpenClaw keeps on a reply (exports carry it)
    reply = (await _json("sessions", "history", "agent:main:main", "--limit", "1", "--nats-url", nats_url))[0]
    assert (reply["role"], reply["text"], reply["api"], reply["stopReason"]) == (
        "assistant",
        "welcome back",
        "openai",
        "end_turn",
    )
    assert reply["outputTokens"] > 0


async def test_imported_sessions_export_back_with_models_and_tokens(
    nats_url: str, nc: Client, openclaw: dict[str, Path], tmp_path: Path
) -> None:
    await provision(nc.jetstream(), Layout())
    source = openclaw["sqlite"] / ".openclaw"
    res = await _run("import", "openclaw", "--from", str(source), "--nats-url", nats_url)
    assert res.exit_code == 0, (res.output, res.stderr)
    out = tmp_path / "export"
    res = await _run("sessions", "export", str(out), "--agent", "main", "--nats-url", nats_url)
    assert res.exit_code == 0, (res.output, res.stderr)
    index = json.loads((out / "agents/main/sessions/sessions.json").read_text())
    main = index["agent:main:main"]
    assert (main["model"], main["modelProvider"], main["inputTokens"], main["outputTokens"]) == (
        "claude-sonnet-4-5",
        "anthropic",
        87,
        24,
    )
    lines = [json.loads(x) for x in Path(main["sessionFile"]).read_text().splitlines()]
    replies = [x["message"] for x in lines if x.get("message", {}).get("role") == "assistant"]
    assert [(m["stopReason"], m["usage"]["input"]) for m in replies] == [
        ("stop", 12),
        ("toolUse", 30),
        ("stop", 45),
        ("error", 0),
    ]
    assert replies[-1]["errorMessage"] == "429 rate limit exceeded"
    assert {(m["api"], m["provider"], m["model"]) for m in replies} == {
        ("anthropic-messages", "anthropic", "claude-sonnet-4-5")
    }


async def test_legacy_jsonl_imports_the_same_sessions(
    nats_url: str, nc: Client, openclaw: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    await provision(nc.jetstream(), Layout())
    monkeypatch.setenv("HOME", str(openclaw["legacy"]))
    monkeypatch.setenv("OPENCLAW_STATE_DIR", str(openclaw["legacy"] / ".openclaw"))  # instead of --from
    res = await _run("import", "openclaw", "--nats-url", nats_url)
    assert res.exit_code == 0, (res.output, res.stderr)
    rows = await _sessions(nats_url)
    assert {k: r["turns"] for k, r in rows.items()} == {k: v[0] for k, v in EXPECTED.items()}
    assert await _stream_messages(nc) == sum(v[0] for v in EXPECTED.values())


async def test_dry_run_lists_the_plan_and_needs_no_gateway(openclaw: dict[str, Path]) -> None:
    source = openclaw["sqlite"] / ".openclaw"
    res = await _run("import", "openclaw", "--from", str(source), "--dry-run")
    assert res.exit_code == 0, (res.output, res.stderr)
    assert f"would copy to {openclaw['state'] / 'clawmesh.json'}" in res.stdout
    assert "agent main: 2 file(s) (2 to copy), 2 session(s) (4 turns, 10 transcript records)" in res.stdout
    assert "agent work: 0 file(s), 1 session(s) (1 turns, 2 transcript records)" in res.stdout
    assert "would import session agent:main:telegram:direct:4242 (1 turns)" in res.stdout
    # the config names the workspaces (`~/…`): clawmesh uses them in place; main's agent dir is the default one
    assert f"workspace {openclaw['sqlite'] / 'ws-work'} used where it is" in res.stdout
    assert (
        f"agent dir {source / 'agents/main/agent'} → {openclaw['state'] / 'agents/main/agent'}" in res.stdout
    )
    assert not openclaw["state"].exists()
    plan = await _json("import", "openclaw", "--from", str(source), "--dry-run")
    assert [(a["agentId"], len(a["sessions"])) for a in plan["agents"]] == [("main", 2), ("work", 1)]


async def test_without_a_gateway_nothing_is_written(openclaw: dict[str, Path]) -> None:
    source = openclaw["sqlite"] / ".openclaw"
    res = await _run("import", "openclaw", "--from", str(source), "--nats-url", "nats://127.0.0.1:1")
    assert res.exit_code == 1
    assert "cannot reach NATS at nats://127.0.0.1:1" in _errors(res)
    assert "clawmesh up" in _errors(res)
    assert not openclaw["state"].exists()


async def test_a_different_config_is_refused_unless_yes(
    nats_url: str, nc: Client, openclaw: dict[str, Path]
) -> None:
    await provision(nc.jetstream(), Layout())
    source = openclaw["sqlite"] / ".openclaw"
    openclaw["state"].mkdir()
    mine = openclaw["state"] / "clawmesh.json"
    mine.write_text('{"agents": {"list": [{"id": "main"}]}}\n')
    res = await _run("import", "openclaw", "--from", str(source), "--nats-url", nats_url)
    assert res.exit_code == 1
    assert f"refused: {mine} exists and differs from {source / 'openclaw.json'}" in res.stderr
    assert "nothing imported (--yes replaces them)" in _errors(res)
    assert await _stream_messages(nc) == 0
    res = await _run("import", "openclaw", "--from", str(source), "--nats-url", nats_url, "--yes")
    assert res.exit_code == 0, (res.output, res.stderr)
    assert mine.read_bytes() == (source / "openclaw.json").read_bytes()


async def test_malformed_sources_are_named_and_the_rest_imported(
    nats_url: str, nc: Client, openclaw: dict[str, Path]
) -> None:
    await provision(nc.jetstream(), Layout())
    source = openclaw["sqlite"] / ".openclaw"
    # a broken event in the SQLite store: that session is skipped, naming file and row
    db = source / "agents/main/agent/openclaw-agent.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE transcript_events SET event_json = '{broken' WHERE session_id = ? AND seq = 1",
            ("0c1e5e6a-0000-4000-8000-000000000002",),
        )
    # legacy files the store does not have: a JSONL line that is not JSON, an index that is not one
    legacy = source / "agents/main/sessions"
    legacy.mkdir(parents=True)
    (legacy / "s9.jsonl").write_text('{"type":"session","id":"s9"}\nnot json\n')
    (legacy / "sessions.json").write_text(
        json.dumps({"agent:main:legacy": {"sessionId": "s9", "sessionFile": "s9.jsonl"}})
    )
    (source / "agents/work/sessions").mkdir(parents=True, exist_ok=True)
    (source / "agents/work/sessions/sessions.json").write_text("[1, 2")

    res = await _run("import", "openclaw", "--from", str(source), "--nats-url", nats_url)
    assert res.exit_code == 1
    assert f"{db} (transcript_events session_id='0c1e5e6a-0000-4000-8000-000000000002' seq=1)" in res.stderr
    assert f"{legacy / 's9.jsonl'} line 2: not a transcript event" in res.stderr
    assert f"{source / 'agents/work/sessions/sessions.json'}: not a session index" in res.stderr
    assert "3 item(s) were not imported" in _errors(res)
    rows = await _sessions(nats_url)
    assert sorted(rows) == ["agent:main:main", "agent:work:main"]


async def test_with_only_openclaw_state_dir_set_its_files_are_used_in_place(
    openclaw: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """clawmesh then runs on OpenClaw's state dir itself: its config and agent dirs are
    clawmesh's already; only the sessions have to go into JetStream."""
    source = openclaw["sqlite"] / ".openclaw"
    monkeypatch.delenv("CLAWMESH_STATE_DIR")
    monkeypatch.setenv("OPENCLAW_STATE_DIR", str(source))
    res = await _run("import", "openclaw", "--dry-run")
    assert res.exit_code == 0, (res.output, res.stderr)
    assert f"config {source / 'openclaw.json'}: unchanged" in res.stdout
    assert f"agent dir {source / 'agents/main/agent'} used where it is" in res.stdout
    assert "agent main: 0 file(s), 2 session(s)" in res.stdout
