"""`--all-gateways` listings: what the other regions of a federation broadcast (their
catalogues, kept by this gateway's ingress in the `gateways` KV bucket; docs/federation.md)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import msgspec
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from rich.table import Table

from ..config import Config
from ..federation import silent_for
from ..kvlist import list_keys
from ..wire import Subjects
from ._common import console
from ._remote import nats_client

__all__ = ["catalogues", "own_region", "print_remote_agents", "print_remote_nodes"]


def own_region(config: Config) -> str | None:
    """This gateway's region: the config's, else the one the running `clawmesh up` was given."""
    from ..localgateway import running

    if config.settings.gateway.region:
        return config.settings.gateway.region
    record = running(config.state_dir)
    return record.region if record else None


async def catalogues(config: Config, url: str | None) -> list[dict[str, Any]]:
    """The latest catalogue of every other region, oldest region name first; each with
    `ageSeconds` (since this gateway stored it, else since it was broadcast) and `gone` (not
    heard from for several of its broadcast periods: remote turns there fail over at once)."""
    out: list[dict[str, Any]] = []
    async with nats_client(config, url) as nc:
        try:
            kv = await nc.jetstream().key_value(Subjects(config.subject_prefix).bucket("gateways"))
        except (BucketNotFoundError, NotFoundError):
            return out
        for key in await list_keys(kv):
            with contextlib.suppress(KeyNotFoundError, msgspec.DecodeError):
                entry = await kv.get(key)
                data = msgspec.json.decode(entry.value or b"{}")
                if isinstance(data, dict):
                    heard = float(data.get("received") or data.get("ts") or 0)
                    age = max(time.time() - heard, 0.0)
                    data["ageSeconds"] = round(age, 1)
                    data["gone"] = silent_for(heard, float(data.get("every") or 0)) is not None
                    out.append(data)
    return out


def _nothing(config: Config, cats: list[dict[str, Any]]) -> bool:
    if cats:
        return False
    if own_region(config) is None:
        console.print(
            "no other gateway known: this gateway is not federated (gateway.region unset, or `clawmesh up` "
            "without --region/--federate)",
            markup=False,
        )
    else:
        console.print("no other gateway has broadcast its catalogue yet", markup=False)
    return True


def print_remote_agents(config: Config, cats: list[dict[str, Any]]) -> None:
    if _nothing(config, cats):
        return
    table = Table("gateway", "agent", "name", "runner", "offered here", "seen", box=None, header_style="bold")
    for cat in cats:
        for agent in cat.get("agents") or []:
            table.add_row(
                str(cat.get("region", "")),
                str(agent.get("id", "")),
                str(agent.get("name", "")),
                str(agent.get("runnerType", "local")),
                "yes" if agent.get("exposed") else "no",
                _seen(cat),
            )
    console.print(table)


def _seen(cat: dict[str, Any]) -> str:
    return f"{cat['ageSeconds']:.0f}s ago" + (" (gone)" if cat.get("gone") else "")


def print_remote_nodes(config: Config, cats: list[dict[str, Any]]) -> None:
    if _nothing(config, cats):
        return
    table = Table("gateway", "node", "online", "labels", "location", "seen", box=None, header_style="bold")
    for cat in cats:
        for node in cat.get("nodes") or []:
            labels = node.get("labels") or {}
            table.add_row(
                str(cat.get("region", "")),
                str(node.get("id", "")),
                "yes" if node.get("online") else "NO",
                ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "location"),
                str(labels.get("location", "")),
                _seen(cat),
            )
    console.print(table)
