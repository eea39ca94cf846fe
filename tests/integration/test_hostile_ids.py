"""Ids from outside (an HTTP `agentId` without a roster, stored session records) never turn
into paths outside where they belong."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from clawmesh.bus import Layout, provision
from clawmesh.cli import app as cli_app
from clawmesh.sessions import SessionRecord, SessionStore, TxUser
from clawmesh.wire import Subjects
from tests.fixtures.gateway import run_gateway


async def test_raw_agent_ids_without_a_roster_are_normalised_like_configured_ones(
    nats_url: str, tmp_path: Path
) -> None:
    config = {"agents": {"defaults": {"model": "echo/test"}}}
    async with run_gateway(nats_url, config, tmp_path) as gw, gw.client() as http:
        for raw, expected in (("../../x", "x"), ("/tmp/x", "tmp-x"), ("Work", "work")):
            r = await http.post("/v1/messages?wait=30", json={"text": "hi", "agentId": raw})
            assert r.status_code == 200, r.text
            assert r.json()["agentId"] == expected
            assert r.json()["sessionKey"].startswith(f"agent:{expected}:")


async def test_export_keeps_every_file_inside_the_directory(nats_url: str, nc: Any, tmp_path: Path) -> None:
    js = nc.jetstream()
    buckets = await provision(js, Layout())
    store = SessionStore(js, Subjects(), buckets["sessions"])
    work = tmp_path / "work"  # the nats-server keeps its files in tmp_path too
    escape = work / "abs-target"
    records = [
        ("main", "agent:main:main", "good-1"),
        ("../../x", "agent:x:main", "s-x"),  # written before agent ids were normalised
        (str(escape), "agent:abs:main", "s-abs"),
        ("main", "agent:main:evil", "../../../escaped"),
        ("main", "agent:main:other", "good-2"),
    ]
    for agent_id, key, session_id in records:
        await store.put_session(
            SessionRecord(session_key=key, agent_id=agent_id, session_id=session_id), None
        )
        await store.append(agent_id, key, TxUser(turn_id=f"t-{session_id}", seq=1, text="hello"), f"m-{key}")
    out = work / "a" / "b" / "export"
    config = tmp_path / "clawmesh.json"
    config.write_text("{}")

    def export() -> Any:
        args = ["--config", str(config), "sessions", "export", str(out), "--nats-url", nats_url]
        return CliRunner().invoke(cli_app, args)

    res = await asyncio.to_thread(export)
    assert res.exit_code == 1, (res.output, res.exception)
    exported = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert exported == [
        "agents/main/sessions/good-1.jsonl",
        "agents/main/sessions/good-2.jsonl",
        "agents/main/sessions/sessions.json",
    ]
    assert [p for p in work.rglob("*") if p.is_file() and not p.is_relative_to(out)] == []
    assert not escape.exists()
    for key in ("agent:x:main", "agent:abs:main", "agent:main:evil"):
        assert f"skipped session {key!r}" in res.stderr
    assert json.loads((out / "agents/main/sessions/sessions.json").read_text()).keys() == {
        "agent:main:main",
        "agent:main:other",
    }
