"""clawmesh ingress service: the HTTP API (and the OpenAI-compatible API) in front of the bus."""

from .app import Ingress, IngressOptions

__all__ = ["Ingress", "IngressOptions"]
