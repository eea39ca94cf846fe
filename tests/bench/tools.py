"""Tool round trips: through NATS to the node-agent (host and warm sandbox) against direct
baselines measured in the same run (docker exec on the same container, raw NATS request/reply).

    python -m tests.bench.tools [--quick] [--json PATH]

Needs a Docker engine and the `clawmesh-testbox:latest` image (scripts/images.sh test); uses
`clawmesh-sandbox:bookworm` for the cold-start figure when it exists.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import docker
import nats

from clawmesh.bus import NatsServer
from clawmesh.wire import ToolInvocation, ToolInvocationResult, decode, encode_json
from tests.bench._common import fmt_us, machine, percentile, print_table, write_json
from tests.fixtures.gateway import run_gateway

TESTBOX = "clawmesh-testbox:latest"
DEFAULT_IMAGE = "clawmesh-sandbox:bookworm"


async def timed(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t) * 1e6)
    return sorted(out)


def row(name: str, samples: list[float], base: float | None = None) -> list[str]:
    p50 = percentile(samples, 50)
    return [
        name,
        str(len(samples)),
        fmt_us(p50),
        fmt_us(percentile(samples, 99)),
        f"{p50 / base:.1f}×" if base else "",
    ]


async def main(quick: bool, json_path: str | None) -> int:
    n = 20 if quick else 100
    client = docker.from_env()
    images = {t for i in client.images.list() for t in i.tags}
    if TESTBOX not in images:
        print(f"error: image {TESTBOX} missing; run scripts/images.sh test", file=sys.stderr)
        return 1
    prefix = f"cmbench-{uuid.uuid4().hex[:6]}-"
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        config = {
            "agents": {
                "list": [
                    {
                        "id": "host",
                        "default": True,
                        "model": "echo/x",
                        "workspace": str(tmp_path / "ws-host"),
                    },
                    {
                        "id": "sbx",
                        "model": "echo/x",
                        "workspace": str(tmp_path / "ws-sbx"),
                        "sandbox": {
                            "mode": "all",
                            "workspaceAccess": "rw",
                            "docker": {"image": TESTBOX, "containerPrefix": prefix},
                        },
                    },
                    {
                        "id": "cold",
                        "model": "echo/x",
                        "workspace": str(tmp_path / "ws-cold"),
                        "sandbox": {
                            "mode": "all",
                            "docker": {
                                "image": DEFAULT_IMAGE if DEFAULT_IMAGE in images else TESTBOX,
                                "containerPrefix": prefix,
                            },
                        },
                    },
                ]
            }
        }
        (tmp_path / "ws-host").mkdir()
        (tmp_path / "ws-host" / "f.txt").write_text("x" * 1000)
        async with (
            NatsServer(store_dir=tmp_path / "js", work_dir=tmp_path) as server,
            run_gateway(server.url, config, tmp_path, services=("node-agent",)),
        ):
            nc = await nats.connect(server.url)

            async def invoke(agent: str, tool: str, args: dict[str, Any]) -> ToolInvocationResult:
                inv = ToolInvocation(
                    invocation_id=uuid.uuid4().hex,
                    tool=tool,
                    arguments=args,
                    agent_id=agent,
                    session_key=f"agent:{agent}:main",
                )
                data, headers = encode_json(inv)
                reply = await nc.request("cm.node.local.invoke", data, timeout=120, headers=headers)
                result = decode(reply.data, ToolInvocationResult, reply.headers)
                if not result.ok:
                    raise RuntimeError(f"{tool} failed: {result.content}")
                return result

            # baseline: raw request/reply on the same server
            async def echo(msg: Any) -> None:
                await msg.respond(msg.data)

            await nc.subscribe("bench.echo", cb=echo)
            raw = await timed(lambda: nc.request("bench.echo", b"x" * 200, timeout=5), n * 5)

            # cold start: first call creates the container (then remove and repeat)
            colds = []
            cold_runs = 2 if quick else 5
            for _ in range(cold_runs):
                t = time.perf_counter()
                await invoke("cold", "exec", {"argv": ["true"]})
                colds.append((time.perf_counter() - t) * 1e6)
                for c in client.containers.list(all=True, filters={"label": "clawmesh.agent=cold"}):
                    if c.name.startswith(prefix):
                        c.remove(force=True)
            colds.sort()

            await invoke("sbx", "exec", {"argv": ["true"]})  # warm it up
            container = next(
                c
                for c in client.containers.list(filters={"label": "clawmesh.agent=sbx"})
                if c.name.startswith(prefix)
            )
            docker_exec = sorted(
                [(await _timed_sync(lambda: container.exec_run(["true"]))) for _ in range(n)]
            )
            sandbox_exec = await timed(lambda: invoke("sbx", "exec", {"argv": ["true"]}), n)
            host_exec = await timed(lambda: invoke("host", "exec", {"argv": ["true"]}), n)
            host_read = await timed(lambda: invoke("host", "read", {"path": "f.txt"}), n * 2)
            await invoke("sbx", "write", {"path": "f.txt", "content": "x" * 1000})
            sandbox_read = await timed(lambda: invoke("sbx", "read", {"path": "f.txt"}), n * 2)
            await nc.close()
        for c in client.containers.list(all=True, filters={"label": "clawmesh.sandbox=1"}):
            if c.name.startswith(prefix):
                c.remove(force=True)
    client.close()
    base = percentile(raw, 50)
    dx = percentile(docker_exec, 50)
    rows = [
        row("raw NATS request/reply (baseline)", raw),
        row("docker exec `true` via SDK (baseline)", docker_exec),
        row("exec `true` in warm sandbox via NATS", sandbox_exec, dx),
        row("exec `true` on the host via NATS", host_exec, base),
        row("read 1 kB file (host agent) via NATS", host_read, base),
        row("read 1 kB file (sandboxed agent) via NATS", sandbox_read, base),
        row("sandbox cold start + first exec", colds),
    ]
    print_table(
        ["case", "n", "p50 µs", "p99 µs", "vs baseline"],
        rows,
        title="tool round trips (µs); ratio: sandbox vs docker exec, others vs raw NATS",
    )
    results["tools"] = {r[0]: {"n": int(r[1]), "p50_us": r[2], "p99_us": r[3], "ratio": r[4]} for r in rows}
    if json_path:
        write_json(json_path, results)
    return 0


async def _timed_sync(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    await asyncio.to_thread(fn)
    return (time.perf_counter() - t) * 1e6


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(args.quick, args.json_path)))
