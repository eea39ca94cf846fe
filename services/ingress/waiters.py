"""Demultiplexes this ingress instance's reply subject to the HTTP requests waiting on turns."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg

from clawmesh.wire import DecodeFailure, ReplyMessage, decode

__all__ = ["Waiters"]

log = logging.getLogger("clawmesh.ingress")


class Waiters:
    """One queue per request here waiting on a turn, fed from the reply subject. Several
    requests can wait on one turn (a retried message id): each gets every reply."""

    def __init__(self) -> None:
        self._queues: dict[str, list[asyncio.Queue[ReplyMessage]]] = {}

    def open(self, turn_id: str) -> asyncio.Queue[ReplyMessage]:
        queue: asyncio.Queue[ReplyMessage] = asyncio.Queue()
        self._queues.setdefault(turn_id, []).append(queue)
        return queue

    def close(self, turn_id: str, queue: asyncio.Queue[ReplyMessage]) -> None:
        """Stop feeding `queue` (another request's queue for the same turn stays)."""
        queues = self._queues.get(turn_id, [])
        if queue in queues:
            queues.remove(queue)
        if not queues:
            self._queues.pop(turn_id, None)

    def __len__(self) -> int:
        """How many turns a request here waits on."""
        return len(self._queues)

    async def on_message(self, msg: Msg) -> None:
        try:
            item = decode(msg.data, ReplyMessage, msg.headers)
        except DecodeFailure as exc:
            log.warning("ingress: ignoring an undecodable reply: %s", exc)
            return
        for queue in self._queues.get(item.turn_id, ()):
            queue.put_nowait(item)
