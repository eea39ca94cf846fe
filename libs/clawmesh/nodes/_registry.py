"""Reading node presence from the `nodes` KV bucket, with a short cache for hot paths."""

from __future__ import annotations

import contextlib
import time

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ..config import NodeSelector
from ..kvlist import list_keys
from ._presence import NodeAnnouncement, NodeStatus, node_statuses, pick_node

__all__ = ["NodeDirectory"]

_decoder = msgspec.json.Decoder(NodeAnnouncement)


class NodeDirectory:
    def __init__(self, kv: KeyValue, *, offline_after_missed: int = 3, cache_seconds: float = 1.0) -> None:
        self.kv = kv
        self.offline_after_missed = offline_after_missed
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, list[NodeAnnouncement]] | None = None

    async def announcements(self, *, fresh: bool = False) -> list[NodeAnnouncement]:
        now = time.monotonic()
        if not fresh and self._cached is not None and now - self._cached[0] < self.cache_seconds:
            return self._cached[1]
        out: list[NodeAnnouncement] = []
        for key in await list_keys(self.kv):
            # gone since listing, or written by a version we cannot read: not a node we can use
            with contextlib.suppress(KeyNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
                entry = await self.kv.get(key)
                if entry.value:
                    out.append(_decoder.decode(entry.value))
        self._cached = (now, out)
        return out

    async def statuses(self, *, fresh: bool = False) -> list[NodeStatus]:
        return node_statuses(
            await self.announcements(fresh=fresh), offline_after_missed=self.offline_after_missed
        )

    async def pick(self, node: str | NodeSelector | None, capability: str) -> tuple[NodeStatus | None, str]:
        """The node an agent's `node` binding (an id, a label selector, or none) chooses for
        `capability`, the local one first (`pick_node`); or None and why not. The directory is
        cached for a second: a node that announced itself since (just started, back after a
        restart) is looked for again before refusing."""
        spec = dict(node.selector) if isinstance(node, NodeSelector) else node
        chosen, why_not = pick_node(await self.statuses(), spec, capability=capability, prefer="local")
        if chosen is None:
            chosen, why_not = pick_node(
                await self.statuses(fresh=True), spec, capability=capability, prefer="local"
            )
        return chosen, why_not
