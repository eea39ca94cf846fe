"""Demultiplexes this ingress instance's reply subject to the HTTP requests waiting on turns."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg

from clawmesh.wire import DecodeFailure, ReplyMessage, decode

__all__ = ["Waiters"]

log = logging.getLogger("clawmesh.ingress")


class Waiters:
    """One queue per turn a request here waits on, fed from the reply subject."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[ReplyMessage]] = {}

    def open(self, turn_id: str) -> asyncio.Queue[ReplyMessage]:
        queue: asyncio.Queue[ReplyMessage] = asyncio.Queue()
        self._queues[turn_id] = queue
        return queue

    def close(self, turn_id: str) -> None:
        self._queues.pop(turn_id, None)

    def __len__(self) -> int:
        return len(self._queues)

    async def on_message(self, msg: Msg) -> None:
        try:
            item = decode(msg.data, ReplyMessage, msg.headers)
        except DecodeFailure as exc:
            log.warning("ingress: ignoring an undecodable reply: %s", exc)
            return
        queue = self._queues.get(item.turn_id)
        if queue is not None:
            queue.put_nowait(item)
