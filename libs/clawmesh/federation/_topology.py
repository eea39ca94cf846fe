"""NATS configuration for a federation: one hub, N regional gateways as leaf nodes.

Each region keeps its own nats-server (its own JetStream domain: streams, KV and turns stay
local) and solicits a leaf connection to the hub. On the hub, every region's leaf user lives in
an account of its own (`R_<REGION>`), and accounts share only what federation needs:

- `<prefix>.gw.<region>.>`: requests addressed to that region's gateway (a service export of
  its account, imported by every other region's account);
- `<prefix>.gwcast.<region>.>`: what that region broadcasts (presence, catalogue; a stream
  export imported by the others).

Everything else a region publishes (inbound, turns, transcripts, KV, JetStream API) has no
importer on the hub, so it never reaches another region; the leaf user's permissions repeat the
same rule at the link, so a mis-edited account block still cannot leak a private subject.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

__all__ = [
    "DEFAULT_LEAF_PORT",
    "FederationError",
    "FederationPlan",
    "Region",
    "broadcast_subject",
    "gateway_subject",
    "plan_federation",
    "region_config",
    "validate_region",
]

DEFAULT_LEAF_PORT: Final = 7422
_REGION: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_RESERVED: Final = frozenset({"hub", "all", "bcast"})
# Replies of a request that crossed accounts travel on `_R_.…` (service import response
# mapping) or the requester's `_INBOX.…`; loop detection subscribes `$LDS.…` on the link.
_LINK_COMMON: Final = ["_INBOX.>", "_R_.>", "$LDS.>"]


class FederationError(ValueError):
    """A federation topology that cannot work (bad region name, duplicates, no regions)."""


def validate_region(name: str, where: str = "region") -> str:
    """A region (= gateway id inside a federation) is one lower-case subject token: it becomes
    part of subjects, account names and JetStream domains, so nothing needs escaping."""
    if not _REGION.match(name):
        raise FederationError(
            f"{where}: {name!r} is not a valid region name (1-32 of a-z, 0-9, '-', starting with a letter or digit)"
        )
    if name in _RESERVED:
        raise FederationError(f"{where}: {name!r} is reserved; choose another region name")
    return name


def gateway_subject(prefix: str, region: str, rest: str = ">") -> str:
    """Requests addressed to `region`'s gateway: `<prefix>.gw.<region>.<rest>`."""
    return f"{prefix}.gw.{region}.{rest}"


def broadcast_subject(prefix: str, region: str, rest: str = ">") -> str:
    """What `region` tells every other region: `<prefix>.gwcast.<region>.<rest>`."""
    return f"{prefix}.gwcast.{region}.{rest}"


def _account(region: str) -> str:
    return "R_" + region.upper().replace("-", "_")


@dataclass(frozen=True)
class Region:
    name: str
    user: str
    password: str

    @property
    def account(self) -> str:
        return _account(self.name)


@dataclass(frozen=True)
class FederationPlan:
    """A hub and its regions. `hub_conf()` is the hub's nats-server config; `region_conf(r)`
    the block a region's nats-server adds (JetStream domain + leaf remote)."""

    regions: tuple[Region, ...]
    hub_host: str
    leaf_port: int = DEFAULT_LEAF_PORT
    prefix: str = "cm"
    hub_name: str = "clawmesh-hub"
    hub_listen: str = "127.0.0.1:4222"
    leaf_listen: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise FederationError(
            f"no region {name!r} in this federation ({', '.join(r.name for r in self.regions)})"
        )

    def leaf_url(self, name: str) -> str:
        """`nats-leaf://user:password@hub:port` for a region (a secret: it holds the password)."""
        r = self.region(name)
        return f"nats-leaf://{quote(r.user, safe='')}:{quote(r.password, safe='')}@{self.hub_host}:{self.leaf_port}"

    def _link_permissions(self, r: Region) -> dict[str, Any]:
        # From the hub's side: what the leaf user may publish crosses region → hub; what it may
        # subscribe to crosses hub → region.
        return {
            "publish": {
                "allow": [
                    gateway_subject(self.prefix, "*"),
                    broadcast_subject(self.prefix, r.name),
                    *_LINK_COMMON,
                ]
            },
            "subscribe": {
                "allow": [
                    gateway_subject(self.prefix, r.name),
                    broadcast_subject(self.prefix, "*"),
                    *_LINK_COMMON,
                ]
            },
        }

    def _account_block(self, r: Region) -> dict[str, Any]:
        others = [o for o in self.regions if o.name != r.name]
        peers = [o.account for o in others]
        imports: list[dict[str, Any]] = []
        for o in others:
            imports.append(
                {"service": {"account": o.account, "subject": gateway_subject(self.prefix, o.name)}}
            )
            imports.append(
                {"stream": {"account": o.account, "subject": broadcast_subject(self.prefix, o.name)}}
            )
        return {
            "users": [{"user": r.user, "password": r.password, "permissions": self._link_permissions(r)}],
            "exports": [
                # a remote turn answers with a stream of events (documented response type for
                # more than one reply; the default "singleton" is not relied on)
                {
                    "service": gateway_subject(self.prefix, r.name),
                    "accounts": peers,
                    "response_type": "stream",
                },
                {"stream": broadcast_subject(self.prefix, r.name), "accounts": peers},
            ]
            if peers
            else [],
            "imports": imports,
        }

    def hub_blocks(self) -> str:
        """The hub's `leafnodes` and `accounts` blocks (without listen/JetStream lines)."""
        accounts = {r.account: self._account_block(r) for r in self.regions}
        leaf_listen = self.leaf_listen or f"0.0.0.0:{self.leaf_port}"
        return (
            f"leafnodes {{ listen: {json.dumps(leaf_listen)} }}\naccounts: {json.dumps(accounts, indent=2)}\n"
        )

    def hub_conf(self, *, store_dir: str = "./jetstream-hub") -> str:
        """The hub's whole nats-server config."""
        return "\n".join(
            [
                "# clawmesh federation hub (generated by `clawmesh deploy federation`). Private: holds passwords.",
                f"server_name: {json.dumps(self.hub_name)}",
                f"listen: {json.dumps(self.hub_listen)}",
                # With several JetStream-enabled leaves the hub needs a domain of its own; it
                # stores nothing of the regions'.
                f'jetstream {{ store_dir: {json.dumps(store_dir)}, domain: "hub" }}',
                self.hub_blocks(),
            ]
        )

    def region_conf(self, name: str) -> str:
        """The leaf remote for region `name` (add to its nats-server config; the region's
        JetStream block needs `domain: "<name>"`, see `region_config`)."""
        return region_config(self.leaf_url(name))


def region_config(leaf_url: str) -> str:
    """The `leafnodes` block of a regional nats-server soliciting the hub at `leaf_url`
    (the region's own users stay in its global account, which the remote binds)."""
    return f"leafnodes {{ remotes: [ {{ urls: [{json.dumps(leaf_url)}] }} ] }}"


def plan_federation(
    regions: Sequence[str],
    *,
    hub_host: str,
    leaf_port: int = DEFAULT_LEAF_PORT,
    prefix: str = "cm",
    passwords: Mapping[str, str] | None = None,
    hub_listen: str = "127.0.0.1:4222",
    leaf_listen: str = "",
) -> FederationPlan:
    """A federation of `regions` around a hub reachable (by the regions) at `hub_host`.
    `passwords` (region → password) keeps existing leaf credentials; new ones are generated."""
    if not regions:
        raise FederationError("a federation needs at least one region")
    seen: set[str] = set()
    for i, name in enumerate(regions):
        validate_region(name, f"regions[{i}]")
        if name in seen:
            raise FederationError(f"regions[{i}]: {name!r} is listed twice")
        seen.add(name)
    given = dict(passwords or {})
    return FederationPlan(
        regions=tuple(
            Region(name=n, user=f"leaf-{n}", password=given.get(n) or secrets.token_urlsafe(24))
            for n in regions
        ),
        hub_host=hub_host,
        leaf_port=leaf_port,
        prefix=prefix,
        hub_listen=hub_listen,
        leaf_listen=leaf_listen,
    )
