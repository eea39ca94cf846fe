"""Proxy-runner overhead per turn (`python -m tests.bench.proxy`): each proxy backend against its
fake, beside a direct call to the same fake in the same run.

The fakes run in their own processes (Coze, OpenCode and an A2A agent on a2a-sdk's server:
`python -m tests.fakes.serve`;
openclawx's remote gateway endpoint: the fake model server's OpenAI route; Claude Code: the fake
CLI, a process per turn as the real one). For each runner this process times, at c=1, one turn
through the backend (`Backend.run`: request building, SSE/JSONL parsing, deltas forwarded,
remote session reused) and one direct call doing the same exchange with a bare client that
reads the answer without interpreting it. Rounds are interleaved so machine noise hits both
alike. The figure that matters is backend minus direct per turn: the goal is ≤ 5 ms.

    python -m tests.bench.proxy [--quick] [--json PATH] [--turns N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from clawmesh.config import (
    A2ASettings,
    ClaudeCodeSettings,
    CozeSettings,
    OpenClawXSettings,
    OpenCodeSettings,
)
from clawmesh_runner.backends import Backend, ProxyTurn
from clawmesh_runner.backends.a2a import A2ABackend
from clawmesh_runner.backends.claude_code import ClaudeCodeBackend
from clawmesh_runner.backends.coze import CozeBackend
from clawmesh_runner.backends.openclawx import OpenClawXBackend
from clawmesh_runner.backends.opencode import OpenCodeBackend
from tests.bench._common import median, print_table, write_json
from tests.bench._fake_rtt import raw_model_call
from tests.bench.pipeline import ROOT, read_line_matching, start_fake_model, stop_process

GOAL_MS = 5.0
TOKEN = "bench-token"
FAKE_CLI = ROOT / "tests" / "fakes" / "claude_cli.py"


async def _start_fake(kind: str, tmp: Path) -> tuple[asyncio.subprocess.Process, str]:
    log = (tmp / f"fake-{kind}.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.serve",
        kind,
        "--secret",
        TOKEN,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    log.close()
    assert proc.stdout is not None
    line, _ = await read_line_matching(proc.stdout, lambda s: s.startswith("LISTENING "), 30)
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


def _turn(settings: Any, env: dict[str, str] | None = None) -> Callable[[str | None], ProxyTurn]:
    def make(remote: str | None) -> ProxyTurn:
        return ProxyTurn(
            agent_id="bench",
            session_key="agent:bench:main",
            turn_id="t",
            text="ping 0",
            settings=settings,
            env=env or {},
            remote_session=remote,
        )

    return make


def _through(backend: Backend, make: Callable[[str | None], ProxyTurn]) -> Callable[[], Awaitable[None]]:
    """One turn through the backend, continuing the remote session like a real session does."""
    remote: list[str | None] = [None]

    async def on_delta(text: str) -> None:
        return None

    async def call() -> None:
        result = await backend.run(make(remote[0]), on_delta)
        if not result.text:
            raise RuntimeError(f"{backend.kind}: empty reply")
        remote[0] = result.remote_session

    return call


def _direct_coze(client: httpx.AsyncClient, url: str) -> Callable[[], Awaitable[None]]:
    body = {
        "bot_id": "7348293334",
        "user_id": "agent:bench:main",
        "additional_messages": [
            {"role": "user", "type": "question", "content": "ping 0", "content_type": "text"}
        ],
        "stream": True,
        "auto_save_history": True,
    }

    async def call() -> None:
        async with client.stream(
            "POST", f"{url}/v3/chat", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp:
            async for _ in resp.aiter_bytes():
                pass

    return call


def _direct_a2a(client: httpx.AsyncClient, url: str) -> Callable[[], Awaitable[None]]:
    """The same exchange as the backend once it knows the card: one streamed SendStreamingMessage."""
    headers = {"Authorization": f"Bearer {TOKEN}", "A2A-Version": "1.0", "Accept": "text/event-stream"}
    message = {"role": "ROLE_USER", "parts": [{"text": "ping 0"}], "contextId": "direct"}

    async def call() -> None:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendStreamingMessage",
            "params": {"message": {**message, "messageId": os.urandom(8).hex()}},
        }
        async with client.stream("POST", f"{url}/rpc", json=body, headers=headers) as resp:
            async for _ in resp.aiter_bytes():
                pass

    return call


def _direct_opencode(
    client: httpx.AsyncClient, url: str, auth: dict[str, str]
) -> Callable[[], Awaitable[None]]:
    """The same exchange as the backend (event stream opened, prompt posted, read to idle)."""
    session: list[str] = []

    async def call() -> None:
        if not session:
            created = await client.post(
                f"{url}/session", json={"title": "direct"}, headers=auth, params={"directory": "/b"}
            )
            session.append(created.json()["id"])
        async with client.stream("GET", f"{url}/event", headers=auth, params={"directory": "/b"}) as events:
            chunks = events.aiter_bytes()
            await anext(chunks)  # server.connected
            await client.post(
                f"{url}/session/{session[0]}/prompt_async",
                json={"parts": [{"type": "text", "text": "ping 0"}]},
                headers=auth,
                params={"directory": "/b"},
            )
            async for chunk in chunks:
                if b"session.idle" in chunk:
                    break

    return call


def _direct_claude(command: str, cwd: Path, env: dict[str, str]) -> Callable[[], Awaitable[None]]:
    session: list[str] = []

    async def call() -> None:
        args = [command, "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages"]
        if session:
            args += ["--resume", session[0]]
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=cwd, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate(b"ping 0")
        if not session:
            import json

            session.append(json.loads(out.splitlines()[-1])["session_id"])

    return call


async def _measure(call: Callable[[], Awaitable[None]], n: int) -> tuple[float, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        await call()
    return (time.process_time() - cpu0) * 1e3 / n, (time.perf_counter() - wall0) * 1e3 / n


async def amain(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="cm-bench-proxy-") as tmp_name:
        tmp = Path(tmp_name)
        coze_proc, coze_url = await _start_fake("coze", tmp)
        oc_proc, oc_url = await _start_fake("opencode", tmp)
        a2a_proc, a2a_url = await _start_fake("a2a", tmp)
        model = await start_fake_model(tmp)
        model_url = f"http://127.0.0.1:{model.port}"
        claude = tmp / "bin" / "claude"
        claude.parent.mkdir()
        claude.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_CLI}" "$@"\n')
        claude.chmod(0o755)
        cc_env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp),
            "CLAUDE_CONFIG_DIR": str(tmp / ".claude"),
        }
        (tmp / "work").mkdir()
        raw = httpx.AsyncClient(trust_env=False, timeout=30)
        model_raw = httpx.AsyncClient(base_url=model_url, trust_env=False, timeout=30)
        coze, x, oc, cc = CozeBackend(), OpenClawXBackend(), OpenCodeBackend(), ClaudeCodeBackend()
        a2a = A2ABackend()
        import base64

        oc_auth = {"Authorization": "Basic " + base64.b64encode(f"opencode:{TOKEN}".encode()).decode()}
        pairs: dict[str, tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]] = {
            "coze": (
                _through(coze, _turn(CozeSettings("com", coze_url, "7348293334", TOKEN, "$"))),
                _direct_coze(raw, coze_url),
            ),
            "openclawx": (
                _through(x, _turn(OpenClawXSettings(model_url, "bench-key", "$", None))),
                raw_model_call(model_raw, "openai"),
            ),
            "opencode": (
                _through(
                    oc,
                    _turn(OpenCodeSettings("remote", oc_url, 4096, TOKEN, "$", Path("/b"), None, "opencode")),
                ),
                _direct_opencode(raw, oc_url, oc_auth),
            ),
            "a2a": (
                _through(a2a, _turn(A2ASettings(a2a_url, TOKEN, "$"))),
                _direct_a2a(raw, a2a_url),
            ),
            "claude_code": (
                _through(cc, _turn(ClaudeCodeSettings(tmp / "work", str(claude), None, None), cc_env)),
                _direct_claude(str(claude), tmp / "work", cc_env),
            ),
        }
        wall: dict[str, dict[str, list[float]]] = {k: {"backend": [], "direct": []} for k in pairs}
        cpu: dict[str, dict[str, list[float]]] = {k: {"backend": [], "direct": []} for k in pairs}
        try:
            for through, direct in pairs.values():  # warm-up: imports, connections, sessions
                for _ in range(3):
                    await through()
                    await direct()
            for _ in range(args.rounds):
                for name, (through, direct) in pairs.items():
                    n = max(5, args.turns // 4) if name == "claude_code" else args.turns
                    for label, call in (("backend", through), ("direct", direct)):
                        c, w = await _measure(call, n)
                        cpu[name][label].append(c)
                        wall[name][label].append(w)
        finally:
            for backend in (coze, x, oc, cc, a2a):
                await backend.aclose()
            await raw.aclose()
            await model_raw.aclose()
            await stop_process(coze_proc, "fake coze")
            await stop_process(oc_proc, "fake opencode")
            await stop_process(a2a_proc, "fake A2A agent")
            await stop_process(model.proc, "fake model server")
    rows, figures = [], {}
    for name in pairs:
        b, d = median(wall[name]["backend"]), median(wall[name]["direct"])
        cb, cd = median(cpu[name]["backend"]), median(cpu[name]["direct"])
        added = b - d
        figures[name] = {
            "backend_wall_ms": round(b, 3),
            "direct_wall_ms": round(d, 3),
            "added_wall_ms": round(added, 3),
            "backend_cpu_ms": round(cb, 3),
            "direct_cpu_ms": round(cd, 3),
            "verdict": "PASS" if added <= GOAL_MS else "MISS",
        }
        rows.append(
            [name, f"{b:.3f}", f"{d:.3f}", f"{added:+.3f}", f"{cb - cd:+.3f}", figures[name]["verdict"]]
        )
    print_table(
        ["runner", "backend ms/turn", "direct ms/turn", "added wall", "added CPU", f"≤ {GOAL_MS:.0f} ms"],
        rows,
        title=f"Proxy overhead per turn at c=1 (median of {args.rounds} interleaved rounds × {args.turns} turns; "
        "claude_code: a quarter, a process per turn, so its wall figure is the noisiest)",
    )
    if args.json:
        write_json(args.json, {"benchmark": "proxy", "goal_ms": GOAL_MS, "runners": figures})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer turns (noisy)")
    parser.add_argument("--json", metavar="PATH", help="write the figures to PATH")
    parser.add_argument("--turns", type=int, default=0, help="turns per runner per round")
    parser.add_argument("--rounds", type=int, default=0, help="interleaved rounds")
    args = parser.parse_args(argv)
    args.turns = args.turns or (20 if args.quick else 100)
    args.rounds = args.rounds or (3 if args.quick else 5)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
