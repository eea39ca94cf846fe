"""Nodes: presence announcements (KV) and placement of an agent's tools on a node."""

from ._presence import (
    NodeAnnouncement,
    NodeStatus,
    Resources,
    node_statuses,
    pick_node,
    read_resources,
    selector_text,
)
from ._registry import NodeDirectory

__all__ = [
    "NodeAnnouncement",
    "NodeDirectory",
    "NodeStatus",
    "Resources",
    "node_statuses",
    "pick_node",
    "read_resources",
    "selector_text",
]
