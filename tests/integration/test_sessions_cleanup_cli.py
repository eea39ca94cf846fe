"""`clawmesh sessions cleanup` against a real nats-server holding a gateway's session store:
a dry run changes nothing and lists what would go; the real run removes exactly that (records
and transcripts) and leaves every other session whole."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from typer.testing import CliRunner

from clawmesh.bus import Layout, provision
from clawmesh.cli import app as cli_app
from clawmesh.sessions import DoneRecord, SessionRecord, SessionStore, TxUser

DAY = 86400.0


def cli(config: Path, *args: str) -> Any:
    return CliRunner().invoke(cli_app, ["--config", str(config), "sessions", "cleanup", *args])


async def _session(store: SessionStore, key: str, age_days: float, *, queued: int = 0) -> None:
    at = time.time() - age_days * DAY
    await store.put_session(
        SessionRecord(
            session_key=key, agent_id="main", session_id=key, seq=1 + queued, created_at=at, updated_at=at
        ),
        None,
    )
    await store.put_done(key, DoneRecord(seq=1, turn_id="t1", updated_at=at), last=0)
    await store.append("main", key, TxUser(turn_id="t1", seq=1, text="hi"), f"{key}-1")


async def test_dry_run_lists_and_the_real_run_removes_exactly_that(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    js = nc.jetstream()
    layout = Layout()
    kv = await provision(js, layout)
    store = SessionStore(js, layout.subjects, kv["sessions"])
    stale, fresh, main, busy = (
        "agent:main:telegram:direct:old",
        "agent:main:telegram:direct:new",
        "agent:main:main",
        "agent:main:api:direct:busy",
    )
    await _session(store, stale, 45)
    await _session(store, fresh, 1)
    await _session(store, main, 400)
    await _session(store, busy, 90, queued=1)
    config = tmp_path / "openclaw.json"
    config.write_text(json.dumps({"session": {"maintenance": {"pruneAfter": "30d"}}}))

    before = sorted(r.session_key for r in await store.list_sessions())
    res = await asyncio.to_thread(cli, config, "--dry-run", "--json", "--nats-url", nats_url)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert (report["beforeCount"], report["afterCount"], report["pruned"], report["dryRun"]) == (
        4,
        3,
        1,
        True,
    )
    assert report["wouldMutate"] is True and report["applied"] is False
    assert [a["sessionKey"] for a in report["actions"]] == [stale]
    assert set(report["protected"]) == {main, busy}
    assert sorted(r.session_key for r in await store.list_sessions()) == before  # nothing written
    assert await store.has_transcript("main", stale)

    res = await asyncio.to_thread(cli, config, "--nats-url", nats_url)
    assert res.exit_code == 0, res.output
    assert "Pruned stale: 1" in res.stdout and "Entries: 4 -> 3 (remove 1)" in res.stdout
    assert sorted(r.session_key for r in await store.list_sessions()) == sorted([fresh, main, busy])
    assert await store.get_done(stale) is None
    assert not await store.has_transcript("main", stale)
    for kept in (fresh, main, busy):
        assert await store.get_done(kept) is not None and await store.has_transcript("main", kept)

    # the removed session starts afresh when a message arrives again
    await _session(store, stale, 0)
    assert stale in {r.session_key for r in await store.list_sessions()}


async def test_warn_mode_reports_unless_enforced(nc: Client, nats_url: str, tmp_path: Path) -> None:
    js = nc.jetstream()
    layout = Layout()
    kv = await provision(js, layout)
    store = SessionStore(js, layout.subjects, kv["sessions"])
    await _session(store, "agent:main:api:direct:old", 60)
    config = tmp_path / "openclaw.json"
    config.write_text(json.dumps({"session": {"maintenance": {"mode": "warn"}}}))

    res = await asyncio.to_thread(cli, config, "--nats-url", nats_url)
    assert res.exit_code == 0, res.output
    assert "report only; --enforce to apply" in res.stdout and "Would prune stale: 1" in res.stdout
    assert len(await store.list_sessions()) == 1
    res = await asyncio.to_thread(cli, config, "--enforce", "--json", "--nats-url", nats_url)
    assert json.loads(res.stdout)["applied"] is True
    assert await store.list_sessions() == []


async def test_several_agents_need_agent_or_all_agents(nc: Client, nats_url: str, tmp_path: Path) -> None:
    await provision(nc.jetstream(), Layout())
    config = tmp_path / "openclaw.json"
    config.write_text(json.dumps({"agents": {"list": [{"id": "a", "default": True}, {"id": "b"}]}}))
    res = await asyncio.to_thread(cli, config, "--dry-run", "--nats-url", nats_url)
    assert res.exit_code == 1 and "Pass --agent <id>" in str(res.exception)
    res = await asyncio.to_thread(cli, config, "--all-agents", "--dry-run", "--json", "--nats-url", nats_url)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["allAgents"] is True and [s["agentId"] for s in out["stores"]] == ["a", "b"]
