"""Regenerate tests/fixtures/oracle/openclawx_stream.json from the real OpenClaw: the openclawx
runner's two turns of one session against OpenClaw's own `/v1/chat/completions`.

Starts the fake model server (in this process) and `openclaw gateway run` with the endpoint
enabled and one agent on that fake, then drives clawmesh's `OpenClawXBackend` at it for two
turns of one local session, recording each exchange (request body, status, content type, the
raw SSE body) and what the model was sent. tests/unit/test_runner_backend_openclawx.py replays
the recorded answers through the backend without node.

Needs OpenClaw 2026.9.6 and Node 24 from npm in $OPENCLAW_ORACLE_DIR (docs/openclaw-oracle.md).
Takes ~30-60 s (OpenClaw's start-up) and ~2 GB of memory.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from _run import ORACLE_VERSION, oracle_dir, oracle_env  # noqa: E402

from clawmesh.config import OpenClawXSettings  # noqa: E402
from clawmesh_runner.backends import ProxyTurn  # noqa: E402
from clawmesh_runner.backends.openclawx import OpenClawXBackend  # noqa: E402
from tests.fakes.models import FakeModelServer, Text  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "oracle" / "openclawx_stream.json"
TOKEN = "oracle-token-0123456789abcdef"
SESSION = "agent:hop:telegram:direct:42"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Recording(httpx.AsyncBaseTransport):
    """Passes requests on and keeps each exchange, the streamed body included."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        response = await self.inner.handle_async_request(request)
        record: dict[str, Any] = {
            "request": {"method": request.method, "path": request.url.path, "body": body},
            "status": response.status_code,
            "contentType": response.headers.get("content-type", ""),
            "body": "",
        }
        self.exchanges.append(record)
        chunks: list[bytes] = []

        async def tee() -> AsyncIterator[bytes]:
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                yield chunk
            record["body"] = b"".join(chunks).decode()

        return httpx.Response(
            response.status_code, headers=response.headers, stream=_Stream(tee(), response), request=request
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Stream(httpx.AsyncByteStream):
    def __init__(self, it: AsyncIterator[bytes], response: httpx.Response) -> None:
        self.it, self.response = it, response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.it:
            yield chunk

    async def aclose(self) -> None:
        await self.response.aclose()


def _config(state: Path, port: int, fake_url: str) -> dict[str, Any]:
    (state / "ws").mkdir(parents=True, exist_ok=True)
    return {
        "gateway": {
            "mode": "local",
            "port": port,
            "bind": "loopback",
            "auth": {"mode": "token", "token": TOKEN},
            "tailscale": {"mode": "off"},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
        },
        "update": {"checkOnStart": False},
        "models": {
            "mode": "merge",
            "catalogRefresh": {"enabled": False},
            "providers": {
                "fake": {
                    "baseUrl": f"{fake_url}/v1",
                    "apiKey": "fake-key",
                    "api": "openai-completions",
                    "models": [
                        {
                            "id": "fake-model",
                            "name": "Fake",
                            "reasoning": False,
                            "input": ["text"],
                            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 128000,
                            "maxTokens": 1024,
                        }
                    ],
                }
            },
        },
        "agents": {
            "defaults": {"model": {"primary": "fake/fake-model"}, "sandbox": {"mode": "off"}},
            "list": [{"id": "main", "default": True, "workspace": str(state / "ws")}],
        },
    }


def _first_line(content: Any) -> str:
    text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    line = text.split("\n", 1)[0]
    return line.split("] ", 1)[1] if line.startswith("[") and "] " in line else line


async def _wait_ready(url: str, proc: asyncio.subprocess.Process, deadline: float) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise SystemExit(f"openclaw gateway exited with {proc.returncode}")
            try:
                if (await client.get(f"{url}/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)  # OpenClaw has no ready signal but its /readyz
    raise SystemExit("openclaw gateway was not ready in time")


async def amain() -> int:
    oracle = oracle_dir()
    with tempfile.TemporaryDirectory(prefix="openclaw-oracle-") as tmp:
        home = Path(tmp)
        state = home / ".openclaw"
        state.mkdir()
        port = _free_port()
        async with FakeModelServer(validate=False, models=("fake-model",)) as fake:
            fake.script(Text("pong from the fake model", chunks=3), Text("second answer", chunks=2))
            (state / "openclaw.json").write_text(json.dumps(_config(state, port, fake.base_url)))
            env = oracle_env(
                home,
                OPENCLAW_CONFIG_PATH=str(state / "openclaw.json"),
                OPENCLAW_NO_AUTO_UPDATE="1",
                DO_NOT_TRACK="1",
                OPENCLAW_DISABLE_BONJOUR="1",
            )
            proc = await asyncio.create_subprocess_exec(
                str(oracle / "node_modules" / ".bin" / "openclaw"),
                "gateway",
                "run",
                "--port",
                str(port),
                "--bind",
                "loopback",
                "--auth",
                "token",
                "--token",
                TOKEN,
                env=env,
                stdout=(home / "gateway.log").open("wb"),
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                await _wait_ready(url, proc, time.monotonic() + 240)
                recording = _Recording()
                backend = OpenClawXBackend(transport=recording)
                settings = OpenClawXSettings(base_url=url, api_key=TOKEN, api_key_path="$", agent_id=None)
                results = []
                remote = None
                for text in ("hello", "again"):
                    turn = ProxyTurn(
                        agent_id="hop",
                        session_key=SESSION,
                        turn_id="t",
                        text=text,
                        settings=settings,
                        env={},
                        remote_session=remote,
                    )
                    deltas: list[str] = []

                    async def on_delta(t: str, deltas: list[str] = deltas) -> None:
                        deltas.append(t)

                    result = await backend.run(turn, on_delta)
                    remote = result.remote_session
                    results.append(
                        {"text": result.text, "remoteSession": result.remote_session, "deltas": deltas}
                    )
                await backend.aclose()
            finally:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
            # what each model call was sent, as (role, first line without OpenClaw's timestamp):
            # the second call must carry the first exchange (one OpenClaw session per `user`)
            model_saw = [
                [
                    (m["role"], _first_line(m["content"]))
                    for m in r.messages
                    if m["role"] in ("user", "assistant")
                ]
                for r in fake.requests
                if r.path.endswith("/chat/completions")
            ]
    OUT.write_text(
        json.dumps(
            {
                "openclaw": ORACLE_VERSION,
                "generatedBy": "scripts/oracle/openclawx_stream.py",
                "session": SESSION,
                "exchanges": recording.exchanges,
                "results": results,
                "modelSaw": model_saw,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"wrote {OUT}: {len(recording.exchanges)} exchanges; the model saw {model_saw}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(amain()))
