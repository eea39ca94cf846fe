"""Per-service NATS users: the pipeline works with least privilege, and every credential is
refused outside its permissions by a real nats-server."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from clawmesh.bus import NatsServer
from clawmesh.natsauth import NatsUser, embedded_users, nats_users, render_auth_conf
from tests.fixtures.gateway import run_gateway, wait_until


@pytest.fixture
async def secured(tmp_path: Path) -> Any:
    users = nats_users("cm", nodes=["local", "sg-1"])
    (tmp_path / "auth.conf").write_text(render_auth_conf(users))
    server = NatsServer(
        store_dir=tmp_path / "js", work_dir=tmp_path, config='include "auth.conf"'
    )  # relative to the generated config file
    await server.start()
    try:
        yield server, {u.name: u for u in users}
    finally:
        await server.stop()


def url(server: NatsServer, user: NatsUser) -> str:
    return f"nats://{user.user}:{user.password}@127.0.0.1:{server.client_port}"


async def violations(server: NatsServer, user: NatsUser, action: Any) -> list[str]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(url(server, user), error_cb=on_error, allow_reconnect=False)
    try:
        await action(nc)
        await nc.flush()
        await wait_until(lambda: errors, timeout=5, message="a permissions violation")
    finally:
        await nc.close()
    return errors


async def test_pipeline_runs_with_least_privilege(secured: Any, tmp_path: Path) -> None:
    server, users = secured
    config = {"agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]}}
    urls = {name: url(server, users[name]) for name in ("ingress", "router", "runner")}
    async with run_gateway(server.url, config, tmp_path, urls=urls) as gw, gw.client() as http:
        r = await http.post(
            "/v1/messages?wait=30", json={"text": "locked down", "peer": {"kind": "direct", "id": "a"}}
        )
        assert r.status_code == 200 and r.json()["text"] == "echo: locked down"
    # the integration user sees events but cannot publish anything
    got: list[bytes] = []
    nc = await nats.connect(url(server, users["integration"]))

    async def cb(msg: Any) -> None:
        got.append(msg.data)

    await nc.subscribe("cm.ev.>", cb=cb)
    await nc.flush()
    admin = await nats.connect(url(server, users["admin"]))
    await admin.publish("cm.ev.main.x", b"{}")
    await admin.flush()
    await wait_until(lambda: got, message="event seen by the integration user")
    await nc.close()
    await admin.close()


async def test_agents_are_served_over_the_agent_protocol_with_least_privilege(
    secured: Any, tmp_path: Path
) -> None:
    """A locked-down ingress registers, streams a reply to the caller's inbox and beats."""
    from synadia_ai.agents import Agents
    from synadia_ai.agents.messages import ResponseChunk

    server, users = secured
    config = {"agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]}}
    urls = {name: url(server, users[name]) for name in ("ingress", "router", "runner")}
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    async with run_gateway(server.url, config, tmp_path, urls=urls):
        nc = await nats.connect(url(server, users["admin"]), error_cb=on_error)
        try:
            [agent] = await Agents(nc=nc).discover()
            chunks = [m async for m in agent.prompt("locked down")]
            status = await agent.status()
        finally:
            await nc.close()
    assert "".join(m.text for m in chunks if isinstance(m, ResponseChunk)) == "echo: locked down"
    assert status.instance_id == agent.instance_id and not errors


async def test_exec_approvals_work_with_least_privilege(secured: Any, tmp_path: Path) -> None:
    """The node-agent creates and waits on its request, ingress decides it over HTTP."""
    from tests.fakes.models import FakeModelServer, Text, ToolCall
    from tests.fixtures.sse import sse_events

    server, users = secured
    async with FakeModelServer() as fake:
        fake.script(ToolCall("exec", {"argv": ["true"]}), Text("done"))
        config = {
            "agents": {"defaults": {"model": "openai/m"}, "list": [{"id": "main", "default": True}]},
            "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "k"}}},
            "tools": {"exec": {"mode": "ask"}},
        }
        urls = {name: url(server, users[name]) for name in ("ingress", "router", "runner")}
        urls["node-agent"] = url(server, users["node-local"])
        services = ("ingress", "router", "runner", "node-agent")
        async with (
            run_gateway(server.url, config, tmp_path, urls=urls, services=services) as gw,
            gw.client(timeout=120) as http,
        ):
            turn = asyncio.create_task(
                http.post(
                    "/v1/messages",
                    json={"text": "go", "peer": {"kind": "direct", "id": "a"}},
                    headers={"Accept": "text/event-stream"},
                )
            )

            async def pending() -> list[Any]:
                r = await http.get("/v1/approvals")
                return list(r.json()["approvals"])

            [request] = await wait_until(pending, timeout=60, message="a pending approval")
            decided = await http.post(f"/v1/approvals/{request['id']}/approve")
            assert decided.status_code == 200, decided.text
            events = sse_events((await turn).text)
    result = next(d for e, d in events if e == "tool_result")
    assert not result.get("isError") and "[exit code 0]" in result["content"]


@pytest.mark.parametrize(
    ("who", "verb", "subject"),
    [
        ("ingress", "pub", "cm.turn.main"),
        # ingress answers `/approve` in a chat (cm.out.<chat platform>.…), never as the HTTP API
        ("ingress", "pub", "cm.out.api.default"),
        ("router", "pub", "cm.in.api.default"),
        ("router", "pub", "cm.ev.main.x"),
        # (a runner does publish inbound messages: sub-agent runs, sessions_send and announces)
        ("runner", "pub", "cm.route.decided"),
        ("runner", "pub", "cm.turn.main"),
        ("node-local", "sub", "cm.node.sg-1.invoke"),
        ("node-local", "pub", "$KV.cm_nodes.sg-1"),
        # exec approvals: a node writes only its own requests; a runner can never decide one
        ("node-local", "pub", "$KV.cm_approvals.sg-1.0123456789abcdef"),
        ("runner", "pub", "$KV.cm_approvals.local.0123456789abcdef"),
        ("integration", "pub", "$KV.cm_approvals.local.0123456789abcdef"),
        # DM pairing: only ingress (and the operator) may create requests or approve senders
        ("router", "pub", "$KV.cm_pairing.approved.telegram.default"),
        ("runner", "pub", "$KV.cm_pairing.pending.telegram.default"),
        ("integration", "pub", "$KV.cm_pairing.approved.telegram.default"),
        ("runner", "pub", "cm.access.denied.telegram.default"),
        ("node-sg-1", "pub", "cm.ev.main.x"),
        ("integration", "pub", "cm.in.api.default"),
        ("integration", "sub", "cm.in.>"),
        ("router", "pub", "$JS.API.STREAM.DELETE.CM_INBOUND"),
        # POST /tools/invoke: ingress asks runners, and never reaches a node or serves the requests
        ("ingress", "pub", "cm.node.local.invoke"),
        ("ingress", "sub", "cm.tools.*.invoke"),
        ("router", "pub", "cm.tools.main.invoke"),
        ("node-local", "pub", "cm.tools.main.invoke"),
        ("integration", "pub", "cm.tools.main.invoke"),
        # the Synadia Agent Protocol: ingress serves this deployment's agents only
        ("ingress", "sub", "agents.prompt.clawmesh.other.main"),
        ("ingress", "sub", "agents.prompt.oc.cm.main"),
        ("ingress", "pub", "agents.hb.clawmesh.other.main"),
        ("router", "sub", "agents.prompt.clawmesh.cm.main"),
        ("runner", "pub", "agents.hb.clawmesh.cm.main"),
    ],
)
async def test_credentials_are_refused_outside_their_permissions(
    secured: Any, who: str, verb: str, subject: str
) -> None:
    server, users = secured

    async def act(nc: Any) -> None:
        if verb == "pub":
            await nc.publish(subject, b"x")
        else:
            await nc.subscribe(subject)

    errors = await violations(server, users[who], act)
    kind = "Publish" if verb == "pub" else "Subscription"
    # nats-py lower-cases the server's message
    assert any(
        "permissions violation" in e.lower() and kind.lower() in e.lower() and subject.lower() in e.lower()
        for e in errors
    ), errors


async def test_allowed_actions_raise_no_violation(secured: Any) -> None:
    server, users = secured
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(url(server, users["node-sg-1"]), error_cb=on_error)
    await nc.subscribe("cm.node.sg-1.invoke")
    await nc.publish("$KV.cm_nodes.sg-1", b"{}")
    await nc.flush()
    # a later violation proves errors are being reported on this connection at all
    await nc.publish("cm.in.api.x", b"")
    await nc.flush()
    await wait_until(lambda: errors, message="the later violation")
    await nc.close()
    assert len(errors) == 1 and "cm.in.api.x" in errors[0]


async def test_ingress_asks_and_a_runner_answers_tools_invoke(secured: Any) -> None:
    """The request/reply of POST /tools/invoke works with the two least-privilege users."""
    server, users = secured
    runner = await nats.connect(url(server, users["runner"]))
    ingress = await nats.connect(url(server, users["ingress"]))
    try:

        async def answer(msg: Any) -> None:
            await msg.respond(b"ran " + msg.data)

        await runner.subscribe("cm.tools.*.invoke", queue="runner", cb=answer)
        await runner.flush()

        async def ask() -> bytes | None:
            # a refused subscription would never answer; an allowed one answers once the server
            # has its interest (seen once, under load, just after the flush)
            try:
                return bytes((await ingress.request("cm.tools.main.invoke", b"read", timeout=5)).data)
            except nats.errors.NoRespondersError:
                return None

        assert await wait_until(ask, timeout=10, message="a runner's answer") == b"ran read"
    finally:
        await ingress.close()
        await runner.close()


async def test_authorization_block_refuses_anonymous_and_keeps_the_config_private(tmp_path: Path) -> None:
    users = {u.name: u for u in embedded_users(tmp_path)}
    server = NatsServer(
        store_dir=tmp_path / "js", work_dir=tmp_path, authorization=render_auth_conf(users.values())
    )
    await server.start()
    try:
        [conf] = list(tmp_path.glob("nats-server-*.conf"))
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600
        with pytest.raises(Exception, match=r"(?i)authorization violation"):
            await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0)
        admin = await nats.connect(url(server, users["admin"]), allow_reconnect=False)
        await admin.close()
    finally:
        await server.stop()
    assert not conf.exists()  # it held the passwords


async def test_a_refused_login_says_so_not_no_servers(secured: Any, tmp_path: Path) -> None:
    """nats-py reports a refused login as "no servers available"; `bus.connect` (and so every CLI
    command) says the server refused the credentials instead, and the CLI says what to set."""
    from typer.testing import CliRunner

    from clawmesh.bus import connect
    from clawmesh.cli import app as cli_app

    server, users = secured
    wrong = f"nats://{users['admin'].user}:wrong@127.0.0.1:{server.client_port}"
    with pytest.raises(PermissionError, match=r"(?i)refused the credentials.*authorization violation"):
        await connect(wrong, name="t", retry_forever=False, quiet=True, connect_timeout=3)
    res = await asyncio.to_thread(
        CliRunner().invoke,
        cli_app,
        ["status", "--json", "--nats-url", f"nats://127.0.0.1:{server.client_port}"],
        env={"CLAWMESH_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)},
    )
    said = f"{res.output}{res.exception}"  # CliError is printed by the console script's main
    assert res.exit_code != 0
    assert "refused the credentials" in said and "CLAWMESH_NATS_USER" in said, said


async def test_ingress_may_answer_in_a_chat_platforms_outbound(secured: Any) -> None:
    """`/approve` answers go out as replies on the chat platforms' outbound subjects only."""
    server, users = secured
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(url(server, users["ingress"]), error_cb=on_error)
    for platform in ("telegram", "slack", "discord", "whatsapp"):
        await nc.publish(f"cm.out.{platform}.default", b"{}")
    await nc.flush()
    await nc.publish("cm.out.api.default", b"{}")  # a later violation: errors are reported
    await nc.flush()
    await wait_until(lambda: errors, message="the later violation")
    await nc.close()
    assert len(errors) == 1 and "cm.out.api.default" in errors[0], errors


async def test_chat_files_reach_the_workspace_with_least_privilege(secured: Any, tmp_path: Path) -> None:
    """Ingress keeps a chat's photo in the media object store, the node-agent stages it into
    the workspace and the runner reads it back for the model: each with its own user."""
    from tests.fakes.telegram import FakeTelegram

    server, users = secured
    async with FakeTelegram() as tg:
        bot = tg.add_bot("7001:t")
        config = {
            "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
            "channels": {
                "telegram": {
                    "botToken": "7001:t",
                    "apiRoot": tg.api_root,
                    "dmPolicy": "open",
                    "allowFrom": ["*"],
                }
            },
        }
        urls = {name: url(server, users[name]) for name in ("ingress", "router", "runner")}
        urls["node-agent"] = url(server, users["node-local"])
        services = ("ingress", "router", "runner", "node-agent")
        async with run_gateway(server.url, config, tmp_path, urls=urls, services=services) as gw:
            photo = b"\xff\xd8" + bytes(range(256)) * 600  # two object store chunks
            tg.photo_message(bot, tg.chat(42, "private"), user=42, sizes=[photo], caption="look")
            (reply,) = await tg.wait_sent(bot, lambda s: s.chat_id == 42, timeout=60)
            note, rest = reply.text.removeprefix("echo: ").split("\n", 1)
            assert rest == "look [1 image(s): image/jpeg]", reply.text
            path = note.removeprefix("[media attached: ").split(" (image/jpeg)")[0]
            assert (gw.holder.current.agent_view("main").workspace / path).read_bytes() == photo
