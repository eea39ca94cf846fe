"""clawmesh node-agent service: presence, tool invocations and sandboxes on one machine."""

from .app import NodeAgent, NodeAgentOptions

__all__ = ["NodeAgent", "NodeAgentOptions"]
