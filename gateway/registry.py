"""Every service of the gateway, by name, and how each is built to run in one process.

The names are the ones users type (`clawmesh service node-agent`) and the ones services report
(`Service.name`: `$SRV` name `clawmesh-<name>`, dead letters on `cm.dlq.<name>`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from types import MappingProxyType
from typing import Final

from clawmesh.bus import Service, ServiceFactory
from clawmesh.config import Config
from clawmesh_ingress import Ingress, IngressOptions
from clawmesh_node_agent import NodeAgent, NodeAgentOptions
from clawmesh_router import Router
from clawmesh_runner import Runner

# The only module that imports the services; the commands import them from here.
__all__ = [
    "SERVICES",
    "Ingress",
    "IngressOptions",
    "NodeAgent",
    "NodeAgentOptions",
    "Router",
    "Runner",
    "in_process",
    "local_node_id",
    "service_class",
]

# In start-up order; run_services stops them in reverse (ingress stops accepting first).
SERVICES: Final[Mapping[str, type[Service]]] = MappingProxyType(
    {
        Ingress.name: Ingress,
        Router.name: Router,
        Runner.name: Runner,
        NodeAgent.name: NodeAgent,
    }
)


def service_class(name: str) -> type[Service]:
    """The class of service `name`; a KeyError that lists the services for any other name."""
    try:
        return SERVICES[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r} (one of {', '.join(SERVICES)})") from None


def local_node_id(config: Config) -> str:
    """The id of the machine's own node: `nodes.local.id`, else `local`."""
    local = config.document.nodes.local if config.document.nodes else None
    return local.id if local and local.id else "local"


def in_process(
    config: Config, *, port: int | None, names: Sequence[str] | None = None
) -> list[tuple[str, ServiceFactory]]:
    """The services that share one process (`clawmesh up`, the test harness), each with its
    factory. `names=None`: all of them, but the node-agent only when `nodes.local.enabled` is
    not false. Ingress listens on `port` (None: the config's); the machine is node `local`
    unless the config names it."""
    local = config.document.nodes.local if config.document.nodes else None
    node_id = local_node_id(config)
    if names is None:
        names = [
            name for name in SERVICES if not (name == NodeAgent.name and local and local.enabled is False)
        ]
    factories: dict[str, ServiceFactory] = {
        Ingress.name: partial(Ingress, options=IngressOptions(port=port)),
        NodeAgent.name: partial(NodeAgent, options=NodeAgentOptions(node_id=node_id)),
    }
    return [(name, factories.get(name) or service_class(name)) for name in names]
