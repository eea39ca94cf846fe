"""A NATS tap for the pipeline benchmark's stage breakdown (runs as its own process).

    python -m tests.bench._tap NATS_URL OUT_PATH

Subscribes to `>` on the server, prints `TAPPING` once the interest is registered, records the
arrival time (`time.perf_counter()`, i.e. CLOCK_MONOTONIC, comparable across processes on Linux)
of every message until its standard input closes, then writes one JSON line per message:
`[t, subject, reply, [32-hex ids found in the payload]]` (turn ids are uuid4 hex). A message a
JetStream consumer delivers keeps its stream subject and has a `$JS.ACK.…` reply subject. A separate process,
so that its timestamps do not wait for the load generator's GIL or event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

import nats
from nats.aio.msg import Msg

_HEX32 = re.compile(rb"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


async def tap(url: str, out: str) -> None:
    nc = await nats.connect(url, name="bench-tap")
    records: list[tuple[float, str, str, bytes]] = []
    clock = time.perf_counter

    async def on_msg(msg: Msg) -> None:
        records.append((clock(), msg.subject, msg.reply, msg.data))

    await nc.subscribe(">", cb=on_msg, pending_msgs_limit=2_000_000, pending_bytes_limit=2**31)
    await nc.flush()
    print("TAPPING", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    # The phase is over when its last reply arrived, but a turn's trailing messages (status,
    # lease release, acks) are still on their way: keep tapping until the bus has been quiet
    # for a moment (bounded).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    seen = -1
    while len(records) != seen and loop.time() < deadline:
        seen = len(records)
        await nc.flush()
        await asyncio.sleep(0.2)
    await nc.close()
    with open(out, "w", encoding="utf-8") as sink:
        for t, subject, reply, data in records:
            ids = sorted({m.decode() for m in _HEX32.findall(data)})
            sink.write(json.dumps([t, subject, reply, ids]) + "\n")


def main() -> None:
    url, out = sys.argv[1], sys.argv[2]
    asyncio.run(tap(url, out))


if __name__ == "__main__":
    main()
