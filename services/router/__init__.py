"""clawmesh router service: CM_INBOUND → routing → CM_TURNS."""

from .app import Router

__all__ = ["Router"]
