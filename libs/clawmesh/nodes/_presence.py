"""Node presence: what each node-agent announces in KV, and how agents pick a node."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

import msgspec

__all__ = [
    "NodeAnnouncement",
    "NodeStatus",
    "Resources",
    "node_statuses",
    "pick_node",
    "read_resources",
    "selector_text",
]


class Resources(msgspec.Struct, kw_only=True, rename="camel"):
    cpus: int = 1
    memory_total: int = 0
    memory_available: int = 0
    load1: float = 0.0
    load5: float = 0.0
    load15: float = 0.0

    @property
    def load_per_cpu(self) -> float:
        return self.load1 / max(self.cpus, 1)


class NodeAnnouncement(msgspec.Struct, kw_only=True, rename="camel"):
    """The KV value (bucket `nodes`, key = node id token), rewritten at every heartbeat."""

    node_id: str
    instance: str
    version: str
    capabilities: list[str] = []
    labels: dict[str, str] = {}
    resources: Resources = msgspec.field(default_factory=Resources)
    sandboxes: list[str] = []
    heartbeat_seconds: float = 5.0
    started_at: float = 0.0
    last_seen: float = 0.0
    hostname: str = ""
    docker: str = ""  # why sandboxes are unavailable, when they are


class NodeStatus(msgspec.Struct, kw_only=True):
    node: NodeAnnouncement
    online: bool
    age: float  # seconds since the last heartbeat


def read_resources() -> Resources:
    """CPU count, memory and load of this machine (Linux /proc; best effort elsewhere)."""
    total = available = 0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key == "MemTotal":
                    total = int(rest.split()[0]) * 1024
                elif key == "MemAvailable":
                    available = int(rest.split()[0]) * 1024
    except OSError:
        pass
    try:
        load1, load5, load15 = os.getloadavg()
    except OSError:
        load1 = load5 = load15 = 0.0
    return Resources(
        cpus=os.cpu_count() or 1,
        memory_total=total,
        memory_available=available,
        load1=load1,
        load5=load5,
        load15=load15,
    )


def node_statuses(
    announcements: Sequence[NodeAnnouncement], *, offline_after_missed: int = 3, now: float | None = None
) -> list[NodeStatus]:
    """A node that missed `offline_after_missed` heartbeats is offline."""
    t = time.time() if now is None else now
    out = []
    for a in announcements:
        age = max(t - a.last_seen, 0.0)
        out.append(NodeStatus(node=a, online=age <= a.heartbeat_seconds * offline_after_missed, age=age))
    return sorted(out, key=lambda s: s.node.node_id)


def selector_text(spec: str | Mapping[str, str] | None) -> str:
    if spec is None:
        return "any node"
    if isinstance(spec, str):
        return f"node '{spec}'"
    return "nodes with " + ", ".join(f"{k}={v}" for k, v in sorted(spec.items()))


def pick_node(
    statuses: Sequence[NodeStatus],
    spec: str | Mapping[str, str] | None,
    *,
    capability: str,
    prefer: str | None = None,
) -> tuple[NodeStatus | None, str]:
    """Choose where a tool runs: a node id, or a label selector; deterministic: the least
    loaded matching online node (load per CPU), ties broken by node id. Returns (node, why)."""
    if isinstance(spec, str):
        matching = [s for s in statuses if s.node.node_id == spec]
        if not matching:
            return None, f"node '{spec}' is not known (no node-agent has announced it)"
    elif spec:
        matching = [s for s in statuses if all(s.node.labels.get(k) == v for k, v in spec.items())]
        if not matching:
            return None, f"no node matches {selector_text(spec)}"
    else:
        matching = list(statuses)
        if prefer is not None and any(s.node.node_id == prefer and s.online for s in matching):
            matching = [s for s in matching if s.node.node_id == prefer]
    online = [s for s in matching if s.online]
    if not online:
        ages = ", ".join(f"{s.node.node_id} last seen {s.age:.0f}s ago" for s in matching)
        return (
            None,
            f"{selector_text(spec)} {'is' if isinstance(spec, str) else 'are'} offline ({ages or 'none known'})",
        )
    capable = [s for s in online if capability in s.node.capabilities]
    if not capable:
        return None, f"{selector_text(spec)} cannot run {capability} (capabilities: " + "; ".join(
            f"{s.node.node_id}: {','.join(s.node.capabilities) or 'none'}" for s in online
        ) + ")"
    best = min(capable, key=lambda s: (round(s.node.resources.load_per_cpu, 2), s.node.node_id))
    return best, ""
