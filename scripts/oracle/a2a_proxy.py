"""Regenerate tests/fixtures/oracle/a2a_proxy.json from the real OpenClaw: the a2a runner's
turns of one session against OpenClaw's own A2A channel (`channels.a2a`, its card and
`/a2a/v1`).

Starts the fake model server (in this process) and `openclaw gateway run` with the A2A channel
enabled (one peer, `clawmesh`, with a bearer token; `replyTimeoutMs` at its 5 s minimum) and
one agent on that fake, then drives clawmesh's `A2ABackend` at the gateway's base URL for three
turns of one local session: two quick ones (the second must reach the same OpenClaw session
through the same `contextId`) and one whose model call outlasts `replyTimeoutMs`, so OpenClaw
answers a working task that the backend polls with `GetTask`. Each HTTP exchange is recorded
(request, status, content type, body) with what the model was sent;
tests/unit/test_runner_backend_a2a.py replays the answers through the backend without node.

Needs OpenClaw 2026.9.6 and Node 24 from npm in $OPENCLAW_ORACLE_DIR (docs/openclaw-oracle.md).
Takes ~30-60 s (OpenClaw's start-up) and ~2 GB of memory.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from _run import ORACLE_VERSION, oracle_dir, oracle_env  # noqa: E402
from openclawx_stream import _config as _gateway_config  # noqa: E402
from openclawx_stream import _free_port, _Recording, _wait_ready  # noqa: E402

from clawmesh.config import A2ASettings  # noqa: E402
from clawmesh_runner.backends import BackendError, ProxyTurn  # noqa: E402
from clawmesh_runner.backends.a2a import A2ABackend  # noqa: E402
from tests.fakes.models import FakeModelServer, Hang, Text  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "oracle" / "a2a_proxy.json"
GATEWAY_TOKEN = "oracle-token-0123456789abcdef"
PEER_TOKEN = "a2a-peer-token-0123456789abcdef"
SESSION = "agent:hop:telegram:direct:42"
TURNS = ("hello", "again", "take your time")


def _config(state: Path, port: int, fake_url: str) -> dict[str, Any]:
    config = _gateway_config(state, port, fake_url)
    config["channels"] = {
        "a2a": {"enabled": True, "replyTimeoutMs": 5000, "peers": {"clawmesh": {"token": PEER_TOKEN}}}
    }
    return config


async def amain() -> int:
    oracle = oracle_dir()
    with tempfile.TemporaryDirectory(prefix="openclaw-oracle-") as tmp:
        home = Path(tmp)
        state = home / ".openclaw"
        state.mkdir()
        port = _free_port()
        async with FakeModelServer(validate=False, models=("fake-model",)) as fake:
            fake.script(
                Text("pong from the fake model", chunks=3),
                Text("second answer", chunks=2),
                Hang(8.0),  # past replyTimeoutMs: OpenClaw answers a working task
            )
            fake.reply = "slow answer"
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
                GATEWAY_TOKEN,
                env=env,
                stdout=(home / "gateway.log").open("wb"),
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            results = []
            try:
                url = f"http://127.0.0.1:{port}"
                await _wait_ready(url, proc, time.monotonic() + 240)
                recording = _Recording()
                backend = A2ABackend(transport=recording)
                settings = A2ASettings(url=url, token=PEER_TOKEN, token_path="$")
                remote = None
                attempts = 3
                pending = list(TURNS)
                while pending:
                    text = pending[0]
                    turn = ProxyTurn(
                        agent_id="hop",
                        session_key=SESSION,
                        turn_id=f"t{len(TURNS) - len(pending) + 1}",
                        text=text,
                        settings=settings,
                        env={},
                        remote_session=remote,
                        timeout=120.0,
                    )
                    deltas: list[str] = []

                    async def on_delta(t: str, deltas: list[str] = deltas) -> None:
                        deltas.append(t)

                    try:
                        result = await backend.run(turn, on_delta)
                    except BackendError as exc:
                        # right after start-up OpenClaw's first agent run may lose a race for
                        # its state database ("another OpenClaw process owns state-lifecycle")
                        attempts -= 1
                        if "state-lifecycle" not in exc.message or text != TURNS[0] or not attempts:
                            raise
                        print(f"retrying the first turn: {exc.message}", file=sys.stderr)
                        del recording.exchanges[1:]  # the card stays: a fresh backend reads it first
                        continue
                    pending.pop(0)
                    remote = result.remote_session
                    results.append({"text": result.text, "remoteSession": remote, "deltas": deltas})
                await backend.aclose()
            except BaseException:
                print((home / "gateway.log").read_text()[-4000:], file=sys.stderr)
                raise
            finally:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
            # which of our turns' texts each model call carried: one OpenClaw session for the
            # local session means each call carries the earlier turns too
            model_saw = [
                [
                    t
                    for t in TURNS
                    if any(t in json.dumps(m["content"]) for m in r.messages if m["role"] == "user")
                ]
                for r in fake.requests
                if r.path.endswith("/chat/completions")
            ]
    OUT.write_text(
        json.dumps(
            {
                "openclaw": ORACLE_VERSION,
                "generatedBy": "scripts/oracle/a2a_proxy.py",
                "session": SESSION,
                "turns": list(TURNS),
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
