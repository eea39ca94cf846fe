"""The state dir's record of the running gateway, and CLI output that never mangles data."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from rich.table import Table

from clawmesh.cli._common import _Output
from clawmesh.cli._remote import expected_services, scatter_gather
from clawmesh.config import load_config
from clawmesh.localgateway import GatewayRunning, LocalGateway, acquire, mark_ready, release, running


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_acquire_records_and_release_removes(tmp_path: Path) -> None:
    record = acquire(tmp_path, tmp_path / "c.json", demo=True)
    assert record.pid == os.getpid()
    ready = mark_ready(tmp_path, record, url="http://127.0.0.1:1", nats_url="nats://x:2", nats_auth_dir=None)
    stored = json.loads((tmp_path / "gateway.json").read_text())
    assert stored["url"] == "http://127.0.0.1:1" and stored["config"] == str(tmp_path / "c.json")
    assert ready.demo is True
    assert running(tmp_path) is None  # this very process is not "another gateway"
    release(tmp_path)
    assert not (tmp_path / "gateway.json").exists()


def test_a_live_holder_refuses_and_a_dead_one_is_replaced(tmp_path: Path) -> None:
    # a live process whose command line names clawmesh holds the state dir
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; print(flush=True); sys.stdin.read()", "clawmesh"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        holder.stdout.readline()  # started: its command line is its own, not pytest's
        (tmp_path / "gateway.json").write_text(
            json.dumps({"pid": holder.pid, "config": None, "url": "http://u"})
        )
        live = running(tmp_path)
        assert live == LocalGateway(pid=holder.pid, config=None, url="http://u")
        with pytest.raises(GatewayRunning, match=f"pid {holder.pid}, http://u"):
            acquire(tmp_path, None)
    finally:
        holder.communicate(b"")
    (tmp_path / "gateway.json").write_text(json.dumps({"pid": _dead_pid(), "config": None}))
    assert running(tmp_path) is None
    assert acquire(tmp_path, None).pid == os.getpid()


def test_a_reused_pid_of_another_program_is_stale(tmp_path: Path) -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", "import sys; print(flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert other.stdout is not None
        other.stdout.readline()
        (tmp_path / "gateway.json").write_text(json.dumps({"pid": other.pid, "config": None}))
        assert running(tmp_path) is None
    finally:
        other.communicate(b"")


def test_unreadable_record_is_no_gateway(tmp_path: Path) -> None:
    (tmp_path / "gateway.json").write_text("{not json")
    assert running(tmp_path) is None
    assert acquire(tmp_path, None).pid == os.getpid()


def test_console_prints_data_as_is_and_never_cuts_ids_off_a_terminal() -> None:
    out = io.StringIO()
    console = _Output()  # the CLI's console: plain text without rich, tables through rich
    key = "agent:family:main:" + "x" * 150
    table = Table("session", "agent", box=None)
    table.add_row(key, "[bold]family[/bold] :smile:")
    with contextlib.redirect_stdout(out):
        console.print(table)
        console.print("agent:family:main [red]x[/red]")
    text = out.getvalue()
    assert key in text
    assert "[bold]family[/bold] :smile:" in text
    assert "agent:family:main [red]x[/red]" in text
    assert "\N{FAMILY}" not in text


@pytest.mark.parametrize(
    "text",
    [
        "a\tb\u2603",
        "x\ry\x07z\x08\x0b\x0c",
        "esc\x1b[31mred",
        ":smile: [bold]x[/]",
        "multi\nline\n",
        "",
        "👪 wide",
    ],
)
def test_plain_console_output_is_what_rich_prints(text: str) -> None:
    """Plain text skips rich (start-up time) but must come out exactly as rich would print it."""
    plain, via_rich = io.StringIO(), io.StringIO()
    console = _Output()
    with contextlib.redirect_stdout(plain):
        console.print(text, "second")
    with contextlib.redirect_stdout(via_rich):
        console.rich.print(text, "second")
    assert plain.getvalue() == via_rich.getvalue()


HOSTILE = "hi \x1b]52;c;ZXZpbA==\x07 \x1b[2J\u202egnp.exe\r\nnext\tline"
HOSTILE_SHOWN = "hi \\x1b]52;c;ZXZpbA==\\x07 \\x1b[2J\\u202egnp.exe\nnext\tline"


def test_what_the_console_prints_cannot_drive_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Text from chats and models (a table cell, a line, a header) is printed with its escape
    sequences shown, not obeyed: no OSC 52 clipboard write, no screen clear, no bidi trick.
    Lines and tabs are kept; rich's own styling of a terminal still works."""
    plain = io.StringIO()
    with contextlib.redirect_stdout(plain):
        _Output().print(HOSTILE.replace("\t", " "))  # (a tab goes through rich: expanded)
    assert plain.getvalue() == HOSTILE_SHOWN.replace("\t", " ") + "\n"
    monkeypatch.setenv("FORCE_COLOR", "1")  # as on a real terminal: headers styled with escapes
    terminal = io.StringIO()
    table = Table("session \x1b[5m", "text")
    table.add_row("agent:home:main", HOSTILE.replace("\n", " "))
    with contextlib.redirect_stdout(terminal):
        _Output().print(table)
    shown = terminal.getvalue()
    assert (
        "\x1b]52" not in shown and "\x1b[2J" not in shown and "\x1b[5m" not in shown and "\u202e" not in shown
    )
    assert "\\x1b]52;c;ZXZpbA==" in shown and "\\x1b[5m" in shown
    assert "\x1b[1m" in shown  # rich's bold header


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stdout", "expected"), [(_Terminal, HOSTILE_SHOWN), (io.StringIO, HOSTILE)])
async def test_a_streamed_reply_is_escaped_on_a_terminal_and_exact_into_a_pipe(
    stdout: type[io.StringIO], expected: str
) -> None:
    """`clawmesh send` / `chat` print the agent's reply as it streams: a model can be made to
    answer with escape sequences, which a terminal must show; a pipe gets the exact text."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from clawmesh.cli._client_cmds import stream_turn
    from clawmesh.httpserver import EmbeddedHTTPServer

    half = len(HOSTILE) // 2
    events = [
        ("delta", {"text": HOSTILE[:half]}),
        ("delta", {"text": HOSTILE[half:]}),
        ("final", {"text": HOSTILE}),
    ]
    stream = "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events)

    async def messages(_: Request) -> Response:
        return Response(stream, media_type="text/event-stream")

    server = EmbeddedHTTPServer(
        Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])]), "127.0.0.1", 0
    )
    await server.start()
    try:
        out = stdout()
        with contextlib.redirect_stdout(out):
            code = await asyncio.to_thread(
                stream_turn, f"http://127.0.0.1:{server.port}", None, {"text": "x"}
            )
    finally:
        await server.stop()
    assert code == 0 and out.getvalue() == expected + "\n"


async def test_scatter_gather_returns_once_every_expected_service_answered(nc: Client) -> None:
    for name in ("ingress", "router"):

        async def answer(msg: Msg, name: str = name) -> None:
            await msg.respond(json.dumps({"service": name}).encode())

        await nc.subscribe("probe", cb=answer)
    # an hour-long window: only `done` can end it while the test still runs
    replies = await asyncio.wait_for(
        scatter_gather(
            nc, "probe", wait=3600, done=lambda r: {x["service"] for x in r} >= {"ingress", "router"}
        ),
        60,
    )
    assert sorted(r["service"] for r in replies) == ["ingress", "router"]


def test_expected_services_follow_the_local_node_setting(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "CLAWMESH_STATE_DIR": str(tmp_path)}
    default = load_config(None, checks=(), env=env, missing_ok=True)
    assert expected_services(default) == {"ingress", "router", "runner", "node-agent"}
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"nodes": {"local": {"enabled": False}}}))
    no_node = load_config(path, checks=(), env=env)
    assert expected_services(no_node) == {"ingress", "router", "runner"}
