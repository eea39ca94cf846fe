"""Model failover through the whole pipeline, config reload, and trace propagation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.fakes.models import FakeModelServer, HTTPError, StreamError, Text
from tests.fixtures.files import replace_unseen, touch_forward
from tests.fixtures.gateway import run_gateway, wait_until, write_config
from tests.fixtures.sse import sse_events


def _fake_config(fake: FakeModelServer, model: Any) -> dict[str, Any]:
    return {
        "agents": {"defaults": {"model": model}, "list": [{"id": "main", "default": True}]},
        "models": {
            "providers": {
                "anthropic": {"baseUrl": fake.base_url, "apiKey": "sk-ant-test"},
                "openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-oai-test"},
            }
        },
    }


async def test_overloaded_primary_fails_over_visibly(nats_url: str, tmp_path: Path) -> None:
    async with FakeModelServer() as fake:
        fake.script("claude-x", HTTPError(529))
        fake.script("gpt-y", Text("answer from the fallback", chunks=3))
        config = _fake_config(fake, {"primary": "anthropic/claude-x", "fallbacks": ["openai/gpt-y"]})
        async with run_gateway(nats_url, config, tmp_path) as gw, gw.client() as http:
            r = await http.post(
                "/v1/messages",
                json={"text": "hi", "peer": {"kind": "direct", "id": "u"}},
                headers={"Accept": "text/event-stream"},
            )
        events = sse_events(r.text)
        failover = next(d for e, d in events if e == "failover")
        assert (failover["fromModel"], failover["toModel"], failover["reason"]) == (
            "anthropic/claude-x",
            "openai/gpt-y",
            "overloaded",
        )
        final = events[-1]
        assert (
            final[0] == "final"
            and final[1]["text"] == "answer from the fallback"
            and final[1]["model"] == "openai/gpt-y"
        )
        assert [rq.model for rq in fake.requests] == ["claude-x", "gpt-y"]


async def test_overloaded_inside_a_200_stream_also_fails_over(nats_url: str, tmp_path: Path) -> None:
    async with FakeModelServer() as fake:
        fake.script("claude-x", StreamError("overloaded_error"))
        fake.script("claude-z", Text("second model"))
        config = _fake_config(fake, {"primary": "anthropic/claude-x", "fallbacks": ["anthropic/claude-z"]})
        async with run_gateway(nats_url, config, tmp_path) as gw, gw.client() as http:
            r = await http.post("/v1/messages?wait=30", json={"text": "hi"})
            assert r.status_code == 200 and r.json()["text"] == "second model"


async def test_strict_primary_reports_the_error_to_the_caller(nats_url: str, tmp_path: Path) -> None:
    async with FakeModelServer() as fake:
        fake.script("claude-x", HTTPError(429, retry_after=7))
        config = _fake_config(fake, "anthropic/claude-x")  # a string model: strict, no fallback
        async with run_gateway(nats_url, config, tmp_path) as gw, gw.client() as http:
            r = await http.post("/v1/messages?wait=30", json={"text": "hi"})
            assert r.status_code == 502
            err = r.json()["error"]
            assert (
                err["code"] == "MODEL_ERROR" and "rate_limit" in err["message"] and "fallbacks" in err["hint"]
            )
            # the error is part of the session's history, and the service carries on
            fake.script("claude-x", Text("recovered"))
            ok = await http.post("/v1/messages?wait=30", json={"text": "again"})
            assert ok.json()["text"] == "recovered"


async def test_system_prompt_comes_from_the_workspace(nats_url: str, tmp_path: Path) -> None:
    async with FakeModelServer() as fake:
        workspace = tmp_path / "ws"
        workspace.mkdir()
        (workspace / "AGENTS.md").write_text("Always answer in haiku.")
        (workspace / "SOUL.md").write_text("You are calm.")
        config = _fake_config(fake, "openai/gpt-y")
        config["agents"]["list"][0]["workspace"] = str(workspace)
        config["agents"]["list"][0]["identity"] = {"name": "Basho"}
        async with run_gateway(nats_url, config, tmp_path) as gw, gw.client() as http:
            await http.post("/v1/messages?wait=30", json={"text": "first"})
            await http.post("/v1/messages?wait=30", json={"text": "second"})
        system = fake.requests[-1].system_text
        assert "Always answer in haiku." in system and "You are calm." in system and "Basho" in system
        # the second call carries the first exchange as history
        roles = [m["role"] for m in fake.requests[-1].messages if m["role"] != "system"]
        assert roles == ["user", "assistant", "user"]


async def test_config_reload_applies_to_later_messages_and_refuses_bad_files(
    nats_url: str, tmp_path: Path
) -> None:
    config: dict[str, Any] = {
        "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "home", "default": True}, {"id": "work"}]}
    }
    async with run_gateway(nats_url, config, tmp_path) as gw, gw.client() as http:
        nc = await nats.connect(nats_url)
        try:
            first = await http.post("/v1/messages?wait=30", json={"text": "a", "channel": "telegram"})
            assert first.json()["agentId"] == "home"
            # Edits keep the file's mtime: the file watcher must not reload before we ask.
            replace_unseen(
                gw.config_path,
                json.dumps(
                    {
                        **config,
                        "bindings": [{"agentId": "work", "match": {"channel": "telegram"}}],
                        "gateway": {"port": 0, "auth": {"token": gw.token}},
                    }
                ),
            )
            replies = await _reload(nc)
            # In-process services share one holder, so only one of them sees a change here; that
            # every process reloads to the same version is tested in test_config_reload.py.
            assert {r["service"] for r in replies} == {"ingress", "router", "runner"}
            assert all(r["ok"] for r in replies) and any(r["changed"] for r in replies)
            second = await http.post("/v1/messages?wait=30", json={"text": "b", "channel": "telegram"})
            assert second.json()["agentId"] == "work"
            version = gw.holder.current.version
            replace_unseen(
                gw.config_path,
                '{"bindings": [{"agentId": "ghost", "match": {"channel": "x"}}], "agents": {"list": [{"id": "a"}]}}',
            )
            refused = await _reload(nc)
            assert refused and not any(r["ok"] for r in refused)
            assert any("unknown agent 'ghost'" in e for r in refused for e in r["errors"])
            assert gw.holder.current.version == version
            third = await http.post("/v1/messages?wait=30", json={"text": "c", "channel": "telegram"})
            assert third.json()["agentId"] == "work"
        finally:
            await nc.close()


async def _reload(nc: Any) -> list[dict[str, Any]]:
    inbox = nc.new_inbox()
    replies: list[dict[str, Any]] = []

    async def cb(msg: Any) -> None:
        replies.append(json.loads(msg.data))

    sub = await nc.subscribe(inbox, cb=cb)
    await nc.publish("cm.ctl.config.reload", b"", reply=inbox)
    await wait_until(lambda: len(replies) >= 3, message="reload replies")
    await sub.unsubscribe()
    return replies


async def test_config_file_changes_are_picked_up_without_a_command(nats_url: str, tmp_path: Path) -> None:
    config: dict[str, Any] = {
        "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "home", "default": True}, {"id": "work"}]}
    }
    async with run_gateway(nats_url, config, tmp_path) as gw, gw.client() as http:
        write_config(
            gw.config_path,
            {
                **config,
                "bindings": [{"agentId": "work", "match": {"channel": "slack"}}],
                "gateway": {"port": 0, "auth": {"token": gw.token}},
            },
        )
        # the watcher compares mtimes: make the change visible even within one timestamp tick
        touch_forward(gw.config_path)
        await wait_until(
            lambda: gw.holder.current.document.bindings, timeout=15, message="file watcher reload"
        )
        r = await http.post("/v1/messages?wait=30", json={"text": "b", "channel": "slack"})
        assert r.json()["agentId"] == "work"


async def test_trace_context_flows_from_http_through_router_and_runner(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # Installed for this test only (restored afterwards): a global provider left behind would
    # make every later test in the process trace, and carry `traceparent` headers.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    from clawmesh.bus import tracer as proxy

    monkeypatch.setattr(proxy, "_real_tracer", None, raising=False)
    config = {"agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]}}
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with run_gateway(nats_url, config, tmp_path) as gw, gw.client() as http:
        r = await http.post(
            "/v1/messages?wait=30",
            json={"text": "traced"},
            headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        )
        assert r.status_code == 200
    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    assert {"cm.in process", "cm.turn process"} <= set(by_name)
    assert {
        format(s.context.trace_id, "032x") for s in spans if s.name in ("cm.in process", "cm.turn process")
    } == {trace_id}
